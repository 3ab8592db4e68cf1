"""A staging reader: one small 3D CNN that outlines the tumour and reads each criterion.

FIGO staging is a handful of study-level yes/no criteria (parametrial invasion, vaginal
third, side wall, hydronephrosis, mucosa, nodes; myometrial depth, cervical stroma,
serosa, adnexa) plus one tumour size, and the stage follows from them by the template's
rules. Each criterion is a question of *where* tumour tissue reaches relative to the
anatomy, so the reader keeps position: it segments primary tumour, extension and
metastatic nodes (the phantom's mask labels) at half resolution; the criteria are then
read by boosted trees (`tree_heads`) from what the outline measures: each class's
extents in mm from the primary's centre, its volume, where it lies on a coarse grid,
and the T2W anatomy. (Linear heads on all of that plus the deepest feature map read
the vaginal third at 0.91 where the trees read it at 0.99: a criterion is a threshold
on a measured extent, which a tree splits on directly.)
The size is measured from the outlined primary in world millimetres
(`reportgen.measure.measure_lesion`) and corrected for partial volume by a log-linear
fit made after training on the reader's own outlines of the training studies. The stage is never predicted: `build_report` derives it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from reportgen.checkpoint import StrictConfig, rename_on_load
from reportgen.errors import ConfigError
from reportgen.measure import largest_component, measure_lesion
from reportgen.model.lesion_reader import LesionHeads, n_measures
from reportgen.model.tree_heads import TreeHeads
from reportgen.model.unet import UNet3D, UNetSpec

READER_TYPE = "reportgen-field-reader"  # config.json's model_type
PRIMARY = 1  # mask label of the primary tumour (reportgen.synth.gynae)
EXTENSION = 2  # ... of the tumour's extension beyond it (staging readers' outline class 2)
NODE = 3  # ... of metastatic lymph nodes (class 3)
SEGMENT_CLASSES = 4  # background, primary tumour, extension, metastatic node (mask labels)
DILATED_URETER = 4  # the outline class of readers trained on phantoms that label it
# per extension / node class: parts apart from the primary (count, voxels, lowest and
# highest x, y, z): a peritoneal deposit or an implant is one of these, not a reach
DETACHED = 2 * 8


@dataclass
class FieldReaderConfig(StrictConfig):
    """What the reader reads (grid, sequences) and answers (the template's fields)."""

    KIND: ClassVar[str] = "field reader"

    template: str
    sequences: tuple[str, ...]
    study_fields: dict[str, list[str]]  # field id -> its values ("false"/"true" for bools)
    finding_fields: dict[str, list[str]] = field(default_factory=dict)  # one finding, per study
    lesion_fields: dict[str, list[str]] = field(default_factory=dict)  # several, per lesion
    # mask label -> outline class (1 lesion or primary, 2 extension, 3 nodes or deposits,
    # 4 a dilated ureter where the phantoms label it)
    label_classes: dict[str, int] = field(default_factory=lambda: {"1": 1, "2": 2, "3": 3})
    segment_classes: int = SEGMENT_CLASSES  # background included
    grid_shape: tuple[int, int, int] = (64, 64, 32)
    grid_spacing: tuple[float, float, float] = (4.0, 4.0, 4.0)
    widths: tuple[int, ...] = (16, 32, 48, 64)
    hidden: int = 128
    dropout: float = 0.2
    # small parts (deposits, implants, nodes) weighed up in the outline's loss and their
    # detached parts measured (`detached`); False in readers trained before both existed
    small_parts: bool = False
    # outline class 2 is the lesions' solid tissue, part of its lesion (O-RADS: the curve is
    # the solid tissue's); False: class 2 is a tumour extension, or unused
    solid_tissue: bool = False
    # criterion -> TreeEnsemble.shape, once boosted trees read the criteria (`fit_tree_heads`)
    tree_shapes: dict[str, list[int]] = field(default_factory=dict)
    name: str = "reportgen-field-reader"
    version: str = "0.1.0"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sequences = tuple(self.sequences)
        self.grid_shape = tuple(int(n) for n in self.grid_shape)  # type: ignore[assignment]
        self.grid_spacing = tuple(float(s) for s in self.grid_spacing)  # type: ignore[assignment]
        self.widths = tuple(int(w) for w in self.widths)
        stride = 2 ** len(self.widths)
        if any(n % stride for n in self.grid_shape):
            raise ConfigError(f"grid {self.grid_shape} must divide by {stride} on every axis")

    @property
    def deep_shape(self) -> tuple[int, int, int]:
        stride = 2 ** len(self.widths)
        return tuple(n // stride for n in self.grid_shape)  # type: ignore[return-value]


# Reader sizes: `tiny` for tests (coarse grid, few channels), `base` for the bundled models.
READER_PRESETS: dict[str, dict] = {
    "tiny": dict(grid_shape=(32, 32, 16), grid_spacing=(8.0, 8.0, 8.0), widths=(4, 8), hidden=16),
    "base": {},
}


def is_field_reader(folder: Path) -> bool:
    """True when a model folder holds a field reader (its config says so)."""
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == READER_TYPE
    except (OSError, ValueError):
        return False


def detached(labels: np.ndarray, spacing: np.ndarray, centre: np.ndarray) -> list[float]:
    """Per extension and node class, its outlined parts that touch no primary tumour: how
    many, how many voxels (log), and their lowest and highest x, y, z in mm from the
    primary's centre (zeros when none). A reach is attached; a deposit is not."""
    near_primary = ndimage.binary_dilation(labels == 1, iterations=1)
    out: list[float] = []
    for c in (2, 3):
        parts, n = ndimage.label(labels == c)
        if n:
            touching = np.unique(parts[near_primary & (parts > 0)])
            apart = np.isin(parts, touching, invert=True) & (parts > 0)
            count = n - len(touching)
        else:
            apart, count = np.zeros(labels.shape, bool), 0
        if count:
            points = np.argwhere(apart) * spacing
            out += [math.log1p(count), math.log1p(int(apart.sum()))]
            out += [*(points.min(0) - centre), *(points.max(0) - centre)]
        else:
            out += [0.0] * 8
    return [float(v) for v in out]


class FieldReader(nn.Module):
    """Image (B, S, X, Y, Z) + present (B, S) -> segmentation logits at half resolution,
    per-field logits and a log-size correction."""

    def __init__(self, cfg: FieldReaderConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        # the outline: half resolution, each sequence and its "present" plane
        self.unet = UNet3D(
            UNetSpec(len(cfg.sequences), tuple(w), cfg.segment_classes, present_planes=True)
        )
        cells = int(torch.tensor(cfg.deep_shape).prod())
        self.where_shape = tuple(2 * n for n in cfg.deep_shape)  # where tumour lies, coarsely
        self.anatomy_shape = tuple(4 * n for n in cfg.deep_shape)  # T2W, finer (ureters)
        self.t2 = cfg.sequences.index("T2W") if "T2W" in cfg.sequences else 0
        classes = cfg.segment_classes - 1
        where = classes * cells * 8
        geometry = self.geometry_columns
        summary = w[-1] * cells + 2 * w[-1] + classes + where + cells * 64 + geometry
        # Studies share their anatomy and differ in a few tumour voxels, so raw features
        # barely vary between them: standardise each feature over the training studies.
        self.trunk = nn.Sequential(
            nn.BatchNorm1d(summary),
            nn.Dropout(cfg.dropout),
            nn.Linear(summary, cfg.hidden),
            nn.GELU(),
        )
        answers = {**cfg.study_fields, **cfg.finding_fields}
        self.heads = nn.ModuleDict({k: nn.Linear(cfg.hidden, len(v)) for k, v in answers.items()})
        self.lesion = (
            LesionHeads(cfg.lesion_fields, measures=n_measures(cfg.solid_tissue))
            if cfg.lesion_fields
            else None
        )
        # boosted trees on the measured geometry read the criteria once fit; the trunk
        # stays the embedding (similar staging, nearby) for retrieval
        self.trees = TreeHeads(cfg.tree_shapes) if cfg.tree_shapes else None
        # log(size) = a + b * log(outlined diameter); identity until `fit_size` sets it
        self.register_buffer("size_coef", torch.tensor([0.0, 1.0]))
        rename_on_load(self, legacy_outline_names)

    @property
    def geometry_columns(self) -> int:
        """How many measured-geometry columns lead the summary (`extents`)."""
        return (self.cfg.segment_classes - 1) * 7 + (DETACHED if self.cfg.small_parts else 0)

    @property
    def input_cfg(self) -> FieldReaderConfig:
        """The grid and sequences a study is prepared on (`reportgen.data.GridConfig`)."""
        return self.cfg

    def embedding(self, image: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The criterion heads' shared input, unit length: similar staging, nearby."""
        return F.normalize(self.trunk(self.summary(image, present)[0]), dim=-1)

    def summary(
        self, image: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the criterion heads read (B, F), and the segmentation logits."""
        seg, deep = self.features(image, present)
        return self._summary(seg, deep, image), seg

    def read(self, summary: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-field logits from `summary`'s features (the trees where fit)."""
        if self.trees is not None:
            return {f"field:{k}": v for k, v in self.trees(summary).items()}
        return self.read_neural(summary)

    def read_neural(self, summary: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-field logits of the linear heads on the trunk."""
        hidden = self.trunk(summary)
        return {f"field:{k}": head(hidden) for k, head in self.heads.items()}

    def features(
        self, image: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Segmentation logits (B, C, X/2, Y/2, Z/2) and the deepest map."""
        decoded, deep = self.decode(image, present)
        return self.unet.head(decoded), deep

    def decode(
        self, image: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The U-Net's last decoder map (B, widths[0], X/2, Y/2, Z/2) and the deepest map:
        what the outline reads, and what masked-image pretraining reconstructs from."""
        return self.unet.decode(image, present)

    def _summary(self, seg: torch.Tensor, deep: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Deep features kept in place, the outline's classes pooled to a coarse grid (which
        kind of tumour tissue lies where: a criterion is a place tumour reaches), and the
        T2W anatomy pooled finer (readers trained before the phantoms labelled dilated
        ureters see hydronephrosis only there)."""
        probs = seg.softmax(dim=1)[:, 1:]
        volumes = torch.log1p(probs.sum(dim=(2, 3, 4)))
        where = F.adaptive_avg_pool3d(probs, self.where_shape)
        anatomy = F.adaptive_avg_pool3d(image[:, self.t2 : self.t2 + 1], self.anatomy_shape)
        return torch.cat(
            [
                self.extents(seg, image.shape[2:]),
                deep.flatten(1),
                deep.mean(dim=(2, 3, 4)),
                deep.amax(dim=(2, 3, 4)),
                volumes,
                where.flatten(1),
                anatomy.flatten(1),
            ],
            dim=1,
        )

    def measured_columns(self) -> np.ndarray:
        """Summary columns the trees read: the outline's extents, volumes and classes in
        place, and the T2W anatomy; not the deep feature map (learned, and tied to the
        training studies' intensities)."""
        cells = int(np.prod(self.cfg.deep_shape))
        width = self.cfg.widths[-1]
        geometry = self.geometry_columns
        deep = width * cells + 2 * width
        classes = self.cfg.segment_classes - 1
        rest = classes + classes * cells * 8 + cells * 64
        return np.r_[0:geometry, geometry + deep : geometry + deep + rest]

    def extents(self, seg: torch.Tensor, size) -> torch.Tensor:
        """Where each outlined class reaches, in mm from the primary's centre: its lowest and
        highest x, y and z, and whether it is there at all (B, 7 per class); then the extension's
        and the nodes' parts lying apart from the primary (`detached`). The measured form
        of 'tumour reaches the side wall / the lower third / the bladder'."""
        labels = F.interpolate(seg, size=tuple(size), mode="trilinear").argmax(dim=1)
        spacing = torch.tensor(self.cfg.grid_spacing)
        rows = []
        for b in range(labels.shape[0]):
            index = [
                torch.nonzero(labels[b] == c).float() * spacing
                for c in range(1, self.cfg.segment_classes)
            ]
            centre = index[0].mean(0) if len(index[0]) else torch.zeros(3)
            row = []
            for points in index:
                if len(points):
                    row += [*(points.amin(0) - centre), *(points.amax(0) - centre), torch.ones(())]
                else:
                    row += [torch.zeros(())] * 7
            if self.cfg.small_parts:
                row += detached(labels[b].numpy(), spacing.numpy(), centre.numpy())
            rows.append(torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in row]))
        return torch.stack(rows).to(seg.dtype)

    def forward(self, image: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        summary, seg = self.summary(image, present)
        return {**self.read(summary), "segment": seg}

    def outline_classes(self, mask: np.ndarray) -> np.ndarray:
        """A lesion mask's labels as the outline's classes (unknown labels: background)."""
        out = np.zeros(mask.shape, np.int64)
        for label, cls in self.cfg.label_classes.items():
            out[mask == int(label)] = cls
        return out

    def corrected_size(self, outlined_mm: float) -> float:
        """The outlined primary's diameter corrected for the grid's partial volume."""
        a, b = (float(v) for v in self.size_coef)
        return math.exp(a + b * math.log(outlined_mm))


def predict_outline(
    model: FieldReader, image: torch.Tensor, present: torch.Tensor, require_primary: bool = False
):
    """Forward pass -> (outputs, label map on the input grid). With `require_primary` (a
    staging study has a tumour by definition) a primary too small to win the argmax on
    this grid (a 1 cm tumour is 2-3 voxels at 4 mm) is the connected region around the
    most probable primary voxel where its probability is at least half that peak."""
    out = model(image, present)
    seg = F.interpolate(out["segment"], size=image.shape[2:], mode="trilinear")
    labels = seg.argmax(dim=1)
    if require_primary:
        for b in range(labels.shape[0]):
            if (labels[b] == PRIMARY).any():
                continue
            prob = seg[b].softmax(dim=0)[PRIMARY].numpy()
            peak = np.unravel_index(int(prob.argmax()), prob.shape)
            parts, _ = ndimage.label(prob >= 0.5 * prob[peak])
            labels[b][torch.from_numpy(parts == parts[peak])] = PRIMARY
    return out, labels


def outlined_size_mm(labels: np.ndarray, affine: np.ndarray) -> float:
    """Longest diameter of the largest outlined primary (0 when none is outlined)."""
    primary = labels == PRIMARY
    if not primary.any():
        return 0.0
    geometry = measure_lesion(largest_component(primary), affine)
    # between the voxel-centre (inner) and voxel-corner (outer) bounds, so that an
    # outline of one or two voxels still measures what it covers
    return (geometry.centre_diameter_mm + geometry.longest_diameter_mm) / 2


# Readers saved before the one U-Net named its parts at the reader's top level.
LEGACY_OUTLINE_NAMES = {"down.": "unet.down.", "up.": "unet.up.", "segment.": "unet.head."}


def legacy_outline_names(name: str) -> str:
    """A reader tensor's name as the reader calls it now (`down.0...` -> `unet.down.0...`)."""
    for old, new in LEGACY_OUTLINE_NAMES.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name
