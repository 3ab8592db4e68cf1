"""Study in, staging report out: the reader's answers, built into the template's report.

The reader answers each criterion; `build_report` codes the answers and derives the stage
by the template's rules, so the stage always follows from the criteria it states. The
tumour's size is the outlined primary's diameter in world millimetres, corrected for
partial volume; its box is the outline's. A study where no primary is outlined gets a
report without a size and says so in its validation, rather than an invented size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pretrain_mae.checkpoint import weights_sha256
from pretrain_mae.data import collate
from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.data import study_arrays
from reportgen.errors import InputError
from reportgen.io.study import Study
from reportgen.model.explain import region_box_mm
from reportgen.model.field_model import load_reader
from reportgen.model.field_training import PRIMARY, outlined_size_mm, predict_outline
from reportgen.model.generate import Draft, GenerateOptions
from reportgen.report import build_report, load_template
from reportgen.report.schema import Box, Evidence, Problem, Provenance, StudyRef


def _value(values: list[str], index: int) -> bool | str:
    chosen = values[index]
    return chosen == "true" if values == ["false", "true"] else chosen


def _box(labels: np.ndarray, affine: np.ndarray) -> Box | None:
    if not (labels == PRIMARY).any():
        return None
    low, high = region_box_mm(labels == PRIMARY, affine)
    return Box(min_mm=tuple(low.round(2).tolist()), max_mm=tuple(high.round(2).tolist()))


class FieldReaderGenerator:
    """A loaded staging reader, drafting reports as `ReportGenerator` does."""

    def __init__(self, model_dir: Path, device: str = "cpu"):
        self.model_dir = Path(model_dir)
        self.model = load_reader(self.model_dir, device)
        self.template = load_template(self.model.cfg.template)
        self.checkpoint = weights_sha256(self.model_dir)
        self.device = torch.device(device)

    @property
    def sequences(self) -> tuple[str, ...]:
        return self.model.cfg.sequences

    def tensors(self, study: Study) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        arrays = study_arrays(study, self.model.cfg)
        if "T2W" not in study.sequences:
            raise InputError(study.source, "has no T2W series; staging reads the anatomy on T2W")
        image = torch.from_numpy(arrays["image"])[None].to(self.device)
        present = torch.from_numpy(arrays["present"])[None].to(self.device)
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
        return self.draft_tensors(study.study_id, image, present, affine, options, study.missing)

    @torch.no_grad()
    def draft_tensors(
        self,
        study_id: str,
        image: torch.Tensor,
        present: torch.Tensor,
        affine: np.ndarray,
        options: GenerateOptions | None = None,
        missing: list[str] | None = None,
    ) -> Draft:
        out, labels = predict_outline(self.model, image, present)
        labels = labels[0].cpu().numpy()
        cfg = self.model.cfg
        fields, confidences = {}, {}
        for name, values in cfg.study_fields.items():
            probs = out[f"field:{name}"][0].softmax(0)
            fields[name] = _value(values, int(probs.argmax()))
            confidences[name] = round(float(probs.max()), 4)
        finding, finding_conf = {}, {}
        for name, values in cfg.finding_fields.items():
            probs = out[f"field:{name}"][0].softmax(0)
            finding[name] = _value(values, int(probs.argmax()))
            finding_conf[name] = round(float(probs.max()), 4)
        outlined = outlined_size_mm(labels, affine)
        size = round(self.model.corrected_size(outlined)) if outlined > 0 else None
        low, high = self.template.field("size_mm").range or (0, float("inf"))
        if size is not None and low <= size <= high:
            finding["size_mm"] = size
        used = [s for s, p in zip(self.sequences, present[0].tolist(), strict=True) if p]
        report = build_report(
            self.template,
            fields,
            [finding],
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
            finding_confidences=[finding_conf],
            notice=NOT_FOR_CLINICAL_USE,
        )
        box = _box(labels, affine)
        if box is not None and report.findings:
            report.findings[0].evidence = Evidence(box=box)
        if "size_mm" not in finding:  # never a size the outline does not support
            report.validation.problems.append(
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
            report.validation.valid = False
        return Draft(report, None, None, None)
