"""Reading a lesion at the acquisition's own resolution: measures of its crop, read by trees.

The lexicon's descriptors are what a radiologist sees at 0.6-1 mm (spicules, an
irregular margin, a rim, dark septations); on the 2 mm model grid they are gone. So each
lesion is cut from the study as acquired (`reportgen.preprocessing.lesion_crop`: every
series straight from its own grid onto an isotropic 0.9 mm crop around the lesion),
outlined and measured there (`reportgen.measure.crop_measures`), and a boosted-tree
classifier per template field (`reportgen.model.tree_heads`, as the staging readers)
reads the measures into a distribution over the field's values. A 3D CNN on the same
crops read margin at 0.49 and kinetics at 0.55 balanced accuracy (bench results
`descriptor_readability_clinical_run1.json`); the measured reader's numbers are in
docs/report_model.md. Which series were acquired is among the measures, and a field
the study's series cannot show is never asked (`reportgen.report.assessable`).

The readability bench (`bench/descriptor_readability.py`) reads with this reader: a
measured ceiling and the product read with the same eyes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from reportgen.checkpoint import (
    StrictConfig,
    load_model_folder,
    read_model_folder,
    save_model_folder,
    write_model_card,
)
from reportgen.errors import ConfigError
from reportgen.io.study import Study
from reportgen.io.write import replaced_privately
from reportgen.measure.crop_measures import MEASURES, crop_measures
from reportgen.model.tree_heads import TreeEnsemble, constant_ensemble, regressed
from reportgen.preprocessing import LESION_CROP
from reportgen.report.calibration import CALIBRATION_FILE, Calibration

CROP_READER_TYPE = "reportgen-crop-reader"
SIZE_BORDER_LIMIT = 0.05  # share of the outline's rays that may run out of the crop
CROP_READER_FOLDER = "crop_reader"  # inside a report model's folder

# BI-RADS MRI: what a lesion's crop shows (its side, clock face, depth and size are
# measured in world millimetres, not read).
BIRADS_CROP_FIELDS = (
    "type",
    "shape",
    "margin",
    "internal_enhancement",
    "nme_distribution",
    "nme_pattern",
    "kinetics_initial",
    "kinetics_delayed",
    "t2_signal",
    "diffusion",
)


@dataclass
class CropReaderConfig(StrictConfig):
    KIND: ClassVar[str] = "crop-reader"

    template: str = "birads_mri"
    fields: dict[str, list[str]] = field(default_factory=dict)  # field -> its values, in order
    crop_shape: tuple[int, int, int] = LESION_CROP.shape
    crop_spacing: tuple[float, float, float] = LESION_CROP.spacing
    measures: list[str] = field(default_factory=lambda: list(MEASURES))
    tree_shapes: dict[str, list[int]] = field(default_factory=dict)  # TreeEnsemble.shape
    # reads a study only where it was acquired at least this finely in-plane (the ACR
    # Breast MRI Accreditation Program's limit for the T1 series: 1 mm); a coarser study
    # keeps the report model's own reading, as the reader was never fit on one
    max_in_plane_mm: float = 1.0
    # the gate: is a lesion at the crop's centre? (`reportgen.model.native_candidates`;
    # empty: no gate, the report model's own candidates only)
    gate_shape: list[int] = field(default_factory=list)
    gate_threshold: float = 0.5
    # the lesion's longest diameter (log mm) read from the measures (empty: none)
    size_shape: list[int] = field(default_factory=list)
    # the probability that the lesion is malignant, read from the measures (empty: none)
    malignancy_shape: list[int] = field(default_factory=list)
    name: str = "reportgen-crop-reader"
    version: str = "0.2.0"

    def __post_init__(self) -> None:
        self.fields = {k: list(v) for k, v in self.fields.items()}
        self.crop_shape = tuple(int(n) for n in self.crop_shape)  # type: ignore[assignment]
        self.crop_spacing = tuple(float(s) for s in self.crop_spacing)  # type: ignore[assignment]
        self.measures = list(self.measures)
        if len(set(self.crop_spacing)) != 1:
            raise ConfigError("the crop reader measures on an isotropic crop")

    @classmethod
    def for_template(cls, template, fields: tuple[str, ...] = BIRADS_CROP_FIELDS, **kw):
        """Heads for `fields` of `template`, with the template's values in its order."""
        return cls(
            template=template.id,
            fields={k: list(template.field(k).values) for k in fields},
            **kw,
        )


class CropReader(nn.Module):
    """Crops (B, len(PROTOCOL), *crop_shape) and acquired series (B, len(PROTOCOL)) ->
    measures (B, len(MEASURES)) -> one logit vector per field (a tree ensemble each)."""

    def __init__(self, cfg: CropReaderConfig):
        super().__init__()
        if cfg.measures != list(MEASURES):
            raise ConfigError(
                "this crop reader was fit on other crop measures than this version takes: "
                "train it again (`reportgen train-crop-reader`)"
            )
        self.cfg = cfg
        # raw probability -> share right on lesions of another seed (`save_crop_reader`
        # writes it beside the weights; None: probabilities as the trees give them)
        self.calibration: Calibration | None = None
        # in `cfg.fields` order (a ModuleDict would clash with nn.Module's own attribute
        # names: a field called "type")
        self.heads = nn.ModuleList(
            TreeEnsemble(*cfg.tree_shapes[k])
            if k in cfg.tree_shapes
            else constant_ensemble(0, len(v))
            for k, v in cfg.fields.items()
        )
        self.gate = TreeEnsemble(*cfg.gate_shape) if cfg.gate_shape else None
        self.size = TreeEnsemble(*cfg.size_shape) if cfg.size_shape else None
        self.malignancy = TreeEnsemble(*cfg.malignancy_shape) if cfg.malignancy_shape else None

    def reads(self, study: Study) -> bool:
        """Whether `study` was acquired finely enough for this reader (its early DCE
        phase, or T2W without contrast)."""
        name = next((n for n in ("DCE_1", "DCE_0", "T2W") if n in study.sequences), None)
        if name is None:
            return False
        spacing = np.sort(np.linalg.norm(study.sequences[name].affine[:3, :3], axis=0))
        return bool(spacing[1] <= self.cfg.max_in_plane_mm + 1e-3)

    def measure(
        self, crops: np.ndarray, present: np.ndarray, masks: list | None = None
    ) -> torch.Tensor:
        """Each crop's `MEASURES` (outlined here, or under the given masks)."""
        spacing = self.cfg.crop_spacing[0]
        rows = [
            crop_measures(
                np.asarray(c, np.float32),
                np.asarray(p, bool),
                spacing,
                None if masks is None else masks[i],
            )
            for i, (c, p) in enumerate(zip(crops, present, strict=True))
        ]
        return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, len(MEASURES))

    def forward(self, measures: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: head(measures) for k, head in zip(self.cfg.fields, self.heads, strict=True)}

    @torch.no_grad()
    def read(self, crops, present, masks: list | None = None) -> list[dict[str, torch.Tensor]]:
        """Each crop's distribution over every field's values."""
        measures = self.measure(np.asarray(crops), np.asarray(present), masks)
        return self.read_measures(measures)

    @torch.no_grad()
    def gate_probability(self, measures: np.ndarray) -> np.ndarray:
        """Each crop's probability that a lesion is at its centre (the gate's)."""
        if self.gate is None:
            raise ConfigError(
                "this crop reader has no gate: fit one with `reportgen train-gate --reader DIR`"
            )
        logits = self.gate(torch.from_numpy(np.asarray(measures, np.float64)))
        return logits.softmax(-1)[:, 1].float().numpy()

    @torch.no_grad()
    def size_mm(self, measures: np.ndarray) -> np.ndarray | None:
        """Each crop's lesion size (longest diameter, mm) as the size head reads it from
        the measures (None without one): the outline's own extent, corrected for what
        the outline leaves out or takes in, as learned on lesions of known size. NaN
        where the outline ran out of the crop (a lesion larger than the 43 mm crop: its
        size is not in it)."""
        if self.size is None:
            return None
        measures = np.asarray(measures, np.float64)
        log_mm = regressed(self.size, torch.from_numpy(measures)).double().numpy()
        border = measures[:, self.cfg.measures.index("outline_reached_border")]
        return np.where(border < SIZE_BORDER_LIMIT, np.exp(log_mm), np.nan)

    @torch.no_grad()
    def malignancy_probability(self, measures: np.ndarray) -> np.ndarray | None:
        """Each crop's probability that its lesion is malignant (None without the head):
        read straight from the measures at the acquisition's own resolution, as a CAD
        score is, rather than through the descriptors the category rules read."""
        if self.malignancy is None:
            return None
        logits = self.malignancy(torch.from_numpy(np.asarray(measures, np.float64)))
        return logits.softmax(-1)[:, 1].float().numpy()

    def confidence(self, field_id: str, probability: float) -> float:
        """How often a value read with `probability` was right on held-out lesions."""
        if self.calibration is None:
            return probability
        return self.calibration.confidence(field_id, probability)

    @torch.no_grad()
    def read_measures(self, measures: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        probs = {k: v.softmax(-1) for k, v in self(measures.double()).items()}
        return [{k: p[i].float() for k, p in probs.items()} for i in range(len(measures))]


def save_crop_reader(model: CropReader, folder: Path, summary: dict | None = None) -> Path:
    save_model_folder(model, folder, CROP_READER_TYPE, summary)
    if model.calibration is not None:
        with replaced_privately(Path(folder) / CALIBRATION_FILE) as part:
            part.write_text(model.calibration.to_json() + "\n")
    write_card(Path(folder))
    return Path(folder)


def write_card(folder: Path) -> None:
    """The model card: what it reads, what it was trained and scored on."""
    cfg, summary = read_model_folder(folder, CROP_READER_TYPE, CropReaderConfig)
    args = summary.get("args", {})
    facts = [
        f"Reads {', '.join(cfg.fields)} ({cfg.template}) from {len(cfg.measures)} measures "
        f"of a lesion's crop of {' x '.join(map(str, cfg.crop_shape))} voxels of "
        f"{cfg.crop_spacing[0]:g} mm (every series from its own grid), one boosted-tree "
        "classifier per field.",
    ]
    if summary.get("train_rows"):
        facts.append(
            f"Fit on {summary['train_rows']} rows (lesions as acquired and with one sequence "
            f"family hidden) of {args.get('cases')} {args.get('protocol')} phantom cases "
            f"(seed {args.get('seed')}), {args.get('iterations')} boosting rounds per field"
            + (
                f"; with the non-mass enhancement views of {args['nme_cases']} more cases."
                if args.get("nme_cases")
                else "."
            )
        )
    calibrated = summary.get("calibration")
    if calibrated and (folder / CALIBRATION_FILE).is_file():
        facts.append(
            f"Confidence: each field's read probability mapped onto the share right "
            f"(isotonic) on {calibrated['values']} read values of seed {calibrated['seed']}."
        )
    held = summary.get("heldout")
    if held:
        scores = ", ".join(
            f"{k} {v['balanced_accuracy']:.2f}"
            + (f" (ECE {v['ece']:.3f})" if v.get("ece") is not None else "")
            for k, v in held["fields"].items()
        )
        facts.append(
            f"Balanced accuracy on {held['lesions']} lesions of seed {held['seed']}: {scores}."
        )
    size = held.get("size") if held else None
    if cfg.size_shape and size:
        low, high = size["mae_mm_95"]
        facts.append(
            "Size: boosted regression trees from the measures to the log longest diameter, "
            f"read where under {SIZE_BORDER_LIMIT:.0%} of the outline's rays leave the crop "
            f"(else the report model's size stays): mean absolute error {size['mae_mm']:.2f} mm "
            f"[{low:.2f}, {high:.2f}] on the {size['lesions']} held-out lesions that fit "
            f"({size['larger_than_the_crop']} did not)."
        )
    if cfg.malignancy_shape and held and held.get("malignancy_auroc") is not None:
        low, high = held["malignancy_auroc_95"]
        facts.append(
            "Malignancy: a boosted-tree classifier from the measures to the lesion's "
            f"pathology (unweighted, so its probability keeps the phantoms' base rate): AUROC "
            f"{held['malignancy_auroc']:.3f} [{low:.3f}, {high:.3f}] on the held-out lesions."
        )
    if args:
        facts.append(
            "Reproduce: `reportgen train-crop-reader "
            + " ".join(
                f"--{k.replace('_', '-')} {v}"
                for k, v in args.items()
                if k not in ("out", "workers") and v is not None
            )
            + " --out DIR`."
        )
    gate = summary.get("gate")
    if cfg.gate_shape and gate:
        made = gate.get("args", {})
        facts.append(
            "Gate (is a lesion at this proposal's centre?, `reportgen.model.native_candidates`): "
            f"boosted trees on the same measures, fit on {gate['rows']} proposals "
            f"({gate['lesion_rows']} on lesions) of {made.get('studies')} whole clinical "
            f"phantom studies (seed {made.get('seed')}); a lesion from probability "
            f"{cfg.gate_threshold:g}. Then: `reportgen train-gate --reader DIR --studies "
            f"{made.get('studies')} --seed {made.get('seed')} --threshold {cfg.gate_threshold:g}`."
        )
    write_model_card(folder, "Breast crop reader", facts)


def load_crop_reader(folder: Path, device: str = "cpu") -> CropReader:
    """Weights through safetensors with strict keys; a config that does not fit is an error."""
    model = load_model_folder(folder, CROP_READER_TYPE, CropReaderConfig, CropReader, device)
    calibration = Path(folder) / CALIBRATION_FILE
    if calibration.is_file():
        model.calibration = Calibration.from_json(calibration.read_text())
    return model
