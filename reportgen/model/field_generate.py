"""Study in, staging report out: the reader's answers, built into the template's report.

The reader answers each criterion; `build_report` codes the answers and derives the stage
by the template's rules, so the stage always follows from the criteria it states. The
tumour's size is the outlined primary's diameter in world millimetres, corrected for
partial volume; its box is the outline's. A study where no primary is outlined gets a
report without a size and says so in its validation, rather than an invented size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pretrain_mae.data import collate
from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.errors import InputError
from reportgen.io.study import Study
from reportgen.measure import (
    largest_component,
    lateral_side,
    measure_lesion,
    midline_x_mm,
    node_parts,
    side_of,
    sides_of,
)
from reportgen.model.explain import region_box_mm
from reportgen.model.field_model import load_reader
from reportgen.model.field_reader import (
    EXTENSION,
    NODE,
    PRIMARY,
    outlined_size_mm,
    predict_outline,
)
from reportgen.model.generator import Draft, GenerateOptions, LoadedModel
from reportgen.model.lesion_reader import T2W, lesion_measures, outlined_lesions
from reportgen.report import build_report
from reportgen.report.assessable import not_assessable
from reportgen.report.derive import derive
from reportgen.report.rules import Scope, evaluate
from reportgen.report.schema import Box, Evidence, Problem, Provenance, StudyRef
from reportgen.report.technique import study_technique
from reportgen.report.template import FieldSpec, Template


def _value(values: list[str], index: int) -> bool | str:
    chosen = values[index]
    return chosen == "true" if values == ["false", "true"] else chosen


def _region_box(region: np.ndarray, affine: np.ndarray) -> Box:
    low, high = region_box_mm(region, affine)
    return Box(min_mm=tuple(low.round(2).tolist()), max_mm=tuple(high.round(2).tolist()))


def applies(spec: FieldSpec, values: dict, study: dict) -> bool:
    """Whether a finding field applies, given the finding's values so far (template order)."""
    return spec.applicable_if is None or evaluate(
        spec.applicable_if, Scope(values, parent=Scope(study))
    )


def _decode(template, cfg, probs, base, study, hidden, forced):
    """Lexicon values in template order (applicability follows earlier values), each the
    most probable unless `forced`; with the log-probability of the whole assignment."""
    values, conf, logp = dict(base), {}, 0.0
    for spec in template.finding_fields:
        if spec.id not in cfg.lesion_fields or spec.id in hidden:
            continue
        if not applies(spec, values, study):
            continue
        choices = cfg.lesion_fields[spec.id]
        index = forced.get(spec.id, int(probs[spec.id].argmax()))
        values[spec.id] = _value(choices, index)
        conf[spec.id] = round(float(probs[spec.id][index]), 4)
        logp += float(torch.log(probs[spec.id][index] + 1e-9))
    return values, conf, logp


def _consistent(template: Template, study: dict, finding: dict) -> bool:
    finding_derived, report_derived = derive(template, study, [finding])
    scope = Scope({**study, **report_derived}, findings=[{**finding, **finding_derived[0]}])
    return not any(
        rule.severity == "error" and evaluate(rule.when, scope) for rule in template.consistency
    )


def most_probable_consistent(template, cfg, probs, base, study, hidden):
    """The reader's most probable lexicon values for one lesion that break none of the
    template's consistency rules (heads read fields one by one and may contradict one
    another, e.g. a solid lesion without solid tissue): the argmax, else the best
    assignment changing one or two fields."""
    best = _decode(template, cfg, probs, base, study, hidden, {})
    if _consistent(template, study, best[0]):
        return best[0], best[1]
    alternatives = [
        (k, i) for k, vals in cfg.lesion_fields.items() if k not in hidden for i in range(len(vals))
    ]
    candidates = []
    for a in range(len(alternatives)):
        for b in range(a, len(alternatives)):
            forced = dict([alternatives[a], alternatives[b]])
            values, conf, logp = _decode(template, cfg, probs, base, study, hidden, forced)
            candidates.append((logp, values, conf))
    for _, values, conf in sorted(candidates, key=lambda c: -c[0]):
        if _consistent(template, study, values):
            return values, conf
    return best[0], best[1]  # nothing consistent nearby: validation will say so


def suspicion(
    template: Template,
    study_probs: dict,
    lesion_probs: list[dict],
    cfg,
    hidden: frozenset[str] = frozenset(),
    samples: int = 200,
) -> float | None:
    """The probability that the template's rules call the study suspicious (its headline in
    the template's suspicious values), with every field drawn from the reader's own
    distribution: the rules stay the template's, the uncertainty is the model's."""
    head = template.derived(template.headline)
    if not head.suspicious:
        return None
    generator = torch.Generator().manual_seed(0)

    def draw(values: list[str], probs: torch.Tensor):
        return _value(values, int(torch.multinomial(probs, 1, generator=generator)))

    hits = 0
    for _ in range(samples):
        fields = {k: draw(cfg.study_fields[k], p) for k, p in study_probs.items()}
        findings = []
        for probs in lesion_probs:
            values: dict = {}
            for spec in template.finding_fields:
                if (
                    spec.id in cfg.lesion_fields
                    and spec.id not in hidden
                    and applies(spec, values, fields)
                ):
                    values[spec.id] = draw(cfg.lesion_fields[spec.id], probs[spec.id])
            findings.append(values)
        _, report_derived = derive(template, fields, findings)
        hits += report_derived.get(template.headline) in head.suspicious
    return hits / samples


class FieldReaderGenerator(LoadedModel):
    """A loaded staging reader, drafting reports as `ReportGenerator` does."""

    def __init__(self, model_dir: Path, device: str = "cpu"):
        model = load_reader(Path(model_dir), device)
        super().__init__(model_dir, model, model.cfg.template, device)

    @property
    def sequences(self) -> tuple[str, ...]:
        return self.model.cfg.sequences

    def tensors(self, study: Study) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        if "T2W" not in study.sequences:  # refuse before the (slow) resampling
            raise InputError(study.source, "has no T2W series; staging reads the anatomy on T2W")
        image, present, arrays = self.prepared(study, self.model.cfg)
        return image, present, arrays["affine"]

    @torch.no_grad()
    def image_embeddings(self, images) -> torch.Tensor:
        """Embeddings of prepared studies (the retrieval baseline's library and query)."""
        out = []
        for start in range(0, len(images), 16):
            batch = collate([images[i] for i in range(start, min(len(images), start + 16))])
            out.append(self.model.embedding(batch["image"], batch["present"]))
        return torch.cat(out)

    def draft(self, study: Study, options: GenerateOptions | None = None) -> Draft:
        image, present, affine = self.tensors(study)
        draft = self.draft_tensors(study.study_id, image, present, affine, options, study.missing)
        draft.report.study.technique = study_technique(study)
        return draft

    @torch.no_grad()
    def draft_tensors(
        self,
        study_id: str,
        image: torch.Tensor,
        present: torch.Tensor,
        affine: np.ndarray,
        options: GenerateOptions | None = None,
        missing: list[str] | None = None,
        study: Study | None = None,  # the reader reads its prepared grid only
    ) -> Draft:
        staging = self.model.lesion is None and self.template.finding_min >= 1
        out, labels = predict_outline(self.model, image, present, require_primary=staging)
        labels = labels[0].cpu().numpy()
        cfg = self.model.cfg
        used = [s for s, p in zip(self.sequences, present[0].tolist(), strict=True) if p]
        hidden = not_assessable(self.template, used)  # never a value the study cannot show
        study_probs = {
            k: out[f"field:{k}"][0].softmax(0) for k in cfg.study_fields if k not in hidden
        }
        fields = {k: _value(cfg.study_fields[k], int(p.argmax())) for k, p in study_probs.items()}
        confidences = {k: round(float(p.max()), 4) for k, p in study_probs.items()}
        fields.update(self._measured_study_fields(fields, labels, affine, image))
        if self.model.lesion is None:
            findings, finding_conf, outlines, problems = self._primary(out, labels, affine, hidden)
            probability = None
        else:
            read = self._lesions(image, present, labels, affine, fields, hidden)
            findings, finding_conf, outlines, problems, lesion_probs = read
            probability = suspicion(self.template, study_probs, lesion_probs, cfg, hidden)
        report = build_report(
            self.template,
            fields,
            findings,
            study=StudyRef(
                study_id=study_id,
                sequences_used=used,
                sequences_missing=list(missing)
                if missing is not None
                else [s for s in self.sequences if s not in used],
            ),
            provenance=Provenance(
                source="model",
                model_name=cfg.name,
                model_version=cfg.version,
                checkpoint_sha256=self.checkpoint,
            ),
            confidences=confidences,
            finding_confidences=finding_conf,
            notice=NOT_FOR_CLINICAL_USE,
        )
        for finding, region in zip(report.findings, outlines, strict=True):
            if region is not None:
                finding.evidence = Evidence(box=_region_box(region, affine))
        if problems:
            report.validation.problems.extend(problems)
            report.validation.valid = False
        self.calibrated(report)
        return Draft(report, None, None, probability, outlines=outlines, grid_affine=affine)

    def _measured_study_fields(self, fields, labels, affine, image) -> dict:
        """Study fields the template asks and the outline measures rather than a head
        reads: the side of parametrial invasion (where the outlined extension lies
        beyond the primary, `measure.lateral_side`), and the side of the metastatic nodes
        and the largest one's short axis (`measure.node_parts`), where the reader states
        invasion or nodes. Not stated where the outline shows none: never guessed."""
        asked = {spec.id for spec in self.template.fields} - set(self.model.cfg.study_fields)
        out: dict = {}
        if "parametrial_side" in asked and fields.get("parametrial_invasion") is True:
            primary = largest_component(labels == PRIMARY)
            if primary.any():
                centre_x = measure_lesion(primary, affine).centre_mm[0]
            else:
                centre_x = midline_x_mm(image[0, T2W].cpu().numpy(), affine)
            side = lateral_side(labels == EXTENSION, affine, centre_x)
            if side is not None:
                out["parametrial_side"] = side
        nodes = fields.get("pelvic_nodes") is True or fields.get("paraaortic_nodes") is True
        if nodes and asked & {"node_side", "node_short_axis_mm"}:
            parts = node_parts(labels == NODE, affine)
            midline = midline_x_mm(image[0, T2W].cpu().numpy(), affine)
            side = sides_of([p.centre_mm[0] for p in parts], midline)
            if side is not None and "node_side" in asked:
                out["node_side"] = side
            if parts and "node_short_axis_mm" in asked:
                low, high = self.template.field("node_short_axis_mm").range
                axis = round(max(p.short_axis_mm for p in parts))
                if low <= axis <= high:
                    out["node_short_axis_mm"] = axis
        return out

    def _primary(self, out, labels, affine, hidden):
        """One primary tumour: the study-level finding heads, and the outline's size."""
        cfg = self.model.cfg
        finding, finding_conf = {}, {}
        for name, values in cfg.finding_fields.items():
            if name in hidden:
                continue
            probs = out[f"field:{name}"][0].softmax(0)
            finding[name] = _value(values, int(probs.argmax()))
            finding_conf[name] = round(float(probs.max()), 4)
        outlined = outlined_size_mm(labels, affine)
        size = round(self.model.corrected_size(outlined)) if outlined > 0 else None
        low, high = self.template.field("size_mm").range or (0, float("inf"))
        problems = []
        if size is not None and low <= size <= high:
            finding["size_mm"] = size
        else:  # never a size the outline does not support
            problems.append(
                Problem(
                    severity="error",
                    where="findings[0].size_mm",
                    rule="not_outlined",
                    message="no primary tumour was outlined, so no size is stated"
                    if size is None
                    else f"the outline measures {size} mm, outside {low:g}-{high:g} mm; "
                    "no size is stated",
                )
            )
        primary = largest_component(labels == PRIMARY)  # the part the size was measured on
        return [finding], [finding_conf], [primary if primary.any() else None], problems

    def lesion_candidates(
        self, image: torch.Tensor, present: torch.Tensor, labels: np.ndarray, affine: np.ndarray
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Each outlined component and its measures (1, n_measures), in reading order: what
        the lesion heads read, here and when a reader learns from corrections."""
        arrays = image[0].float().cpu().numpy()
        kept = present[0].cpu().numpy()
        for region, solid in outlined_lesions(labels, self.model.cfg.solid_tissue):
            measures = lesion_measures(arrays, kept, region, affine, solid)
            yield region, torch.from_numpy(measures)[None]

    def _lesions(self, image, present, labels, affine, fields, hidden):
        """Each outlined component the lesion heads call a lesion, read on its own."""
        template, cfg = self.template, self.model.cfg
        midline = midline_x_mm(image[0, T2W].float().cpu().numpy(), affine)
        side = next((s.id for s in template.finding_fields if s.concept == "laterality"), None)
        low, high = template.field("size_mm").range or (0, float("inf"))
        findings, confs, outlines, problems, probs_out = [], [], [], [], []
        for region, measures in self.lesion_candidates(image, present, labels, affine):
            probs = {k: v[0].softmax(0) for k, v in self.model.lesion(measures).items()}
            if float(probs["is_lesion"][1]) < 0.5:
                continue
            geometry = measure_lesion(region, affine)
            values: dict = {}
            if side is not None:
                values[side] = side_of(geometry.centre_mm[0], midline)
            size = round(
                self.model.corrected_size(outlined_size_mm(region.astype(np.int64), affine))
            )
            if low <= size <= high:
                values["size_mm"] = size
            else:
                problems.append(
                    Problem(
                        severity="error",
                        where=f"findings[{len(findings)}].size_mm",
                        rule="not_outlined",
                        message=f"the outline measures {size} mm, outside {low:g}-{high:g} mm",
                    )
                )
            values, conf = most_probable_consistent(template, cfg, probs, values, fields, hidden)
            findings.append(values)
            confs.append(conf)
            outlines.append(region.astype(bool))
            probs_out.append(probs)
            if len(findings) == template.finding_max:
                break
        return findings, confs, outlines, problems, probs_out
