"""A pancreas CT in, a SAR/APA report out: the pancreas reader's outlines, measured, read
by stated rules, built into the template (which derives NCCN resectability).

Nothing a phase does not show is stated: without a pancreatic or portal venous phase
the fields and values that need contrast are left out (the template's `requires`), a
solid mass is not reported (only a cyst, which a plain CT shows), and the template says
in plain words that a non-contrast CT cannot assess a pancreatic mass or vessel contact.
"""

from __future__ import annotations

from pathlib import Path

from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.errors import InputError
from reportgen.io.study import Study
from reportgen.model.explain import region_box_mm
from reportgen.model.generator import Draft, GenerateOptions, LoadedModel
from reportgen.model.pancreas_reader import (
    MIN_CRANIOCAUDAL_MM,
    PancreasOutlines,
    craniocaudal_mm,
    load_pancreas_reader,
    measure_outlines,
    read_outlines,
)
from reportgen.model.pancreas_reading import read_pancreas
from reportgen.preprocessing import CT_CHANNELS
from reportgen.report import build_report
from reportgen.report.assessable import not_assessable, unseen_values
from reportgen.report.schema import Box, Evidence, Problem, Provenance, StudyRef
from reportgen.report.technique import study_technique

CT_NAMES = (*CT_CHANNELS, "CT")


class PancreasReaderGenerator(LoadedModel):
    """A loaded pancreas reader, drafting `pancreas_ct` reports."""

    def __init__(self, model_dir: Path, device: str = "cpu"):
        model = load_pancreas_reader(Path(model_dir), device)
        super().__init__(model_dir, model, model.cfg.template, device)

    @property
    def sequences(self) -> tuple[str, ...]:
        return self.model.cfg.sequences

    def draft(self, study: Study, options: GenerateOptions | None = None) -> Draft:
        if not any(name in CT_NAMES for name in study.sequences):
            raise InputError(study.source, "has no CT phase (CT_NC, CT_PANC, CT_PV or CT)")
        reach = craniocaudal_mm(study)
        if reach < MIN_CRANIOCAUDAL_MM:  # a slab: nothing outside it would be read, only guessed
            raise InputError(
                study.source,
                f"covers {reach:.0f} mm craniocaudally; a pancreas CT must cover at least "
                f"{MIN_CRANIOCAUDAL_MM:.0f} mm (the pancreas and its vessels)",
            )
        return self.draft_outlines(study, read_outlines(self.model, study))

    def draft_outlines(self, study: Study, outlines: PancreasOutlines) -> Draft:
        """The report the reader's outlines of `study` measure (benches score both)."""
        used = [name for name in study.sequences if name in CT_NAMES]
        measures = measure_outlines(outlines)
        contrast = "CT_PANC" if "CT_PANC" in used else "CT_PV"
        fields, findings = read_pancreas(measures, contrast_phase=contrast)
        hidden = not_assessable(self.template, used)
        unseen = unseen_values(self.template, used)
        fields = {k: v for k, v in fields.items() if k not in hidden}
        kept, regions = [], []
        for finding, lesion in zip(findings, measures.lesions, strict=True):
            if finding["type"] in unseen.get("type", ()):
                continue  # a solid mass is not seen without contrast: never stated
            kept.append({k: v for k, v in finding.items() if k not in hidden})
            regions.append(lesion.outline)
        limit = self.template.finding_max
        problems = []
        if len(kept) > limit:
            problems.append(
                Problem(
                    severity="warning",
                    where="findings",
                    rule="finding_limit",
                    message=f"{len(kept)} pancreatic lesions outlined; the {limit} largest "
                    "are reported",
                )
            )
            kept, regions = kept[:limit], regions[:limit]
        if not outlines.pancreas_found:
            problems.append(
                Problem(
                    severity="error",
                    where="findings",
                    rule="not_outlined",
                    message="no pancreas was outlined, so the pancreas was read around the "
                    "centre of the body",
                )
            )
        report = build_report(
            self.template,
            fields,
            kept,
            study=StudyRef(
                study_id=study.study_id,
                sequences_used=used,
                sequences_missing=[s for s in CT_CHANNELS if s not in used and "CT" not in used],
            ),
            provenance=Provenance(
                source="model",
                model_name=self.model.cfg.name,
                model_version=self.model.cfg.version,
                checkpoint_sha256=self.checkpoint,
            ),
            notice=NOT_FOR_CLINICAL_USE,
        )
        for finding, region in zip(report.findings, regions, strict=True):
            if region is not None and region.any():
                low, high = region_box_mm(region, outlines.fine_affine)
                finding.evidence = Evidence(
                    box=Box(
                        min_mm=tuple(low.round(2).tolist()), max_mm=tuple(high.round(2).tolist())
                    )
                )
        if problems:
            report.validation.problems.extend(problems)
            report.validation.valid = report.validation.valid and all(
                p.severity != "error" for p in problems
            )
        report.study.technique = study_technique(study)
        self.calibrated(report)
        return Draft(report, None, None, None, outlines=regions, grid_affine=outlines.fine_affine)
