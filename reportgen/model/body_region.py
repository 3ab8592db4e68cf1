"""Which body region a study shows, read from its T2W image, and how far it is from training.

DICOM's BodyPartExamined says the region when it is there; a NIfTI, NRRD or anonymised
export says nothing. A BI-RADS report of a pelvis is worse than no report, so the image
itself is read: a small 3D CNN on the T2W volume at 8 mm (the body's outline and its
large structures, not detail) answers breast or pelvis. Its embedding also says how
unusual the study is: the Mahalanobis distance to the chosen region's training studies,
against a threshold calibrated on held-out phantoms (their 99th percentile), flags a
study unlike anything the models were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.checkpoint import (
    StrictConfig,
    load_model_folder,
    save_model_folder,
)
from reportgen.errors import InputError
from reportgen.io.study import Study

REGION_TYPE = "reportgen-body-region"  # config.json's model_type
REGION_FOLDER = "body_region"  # its folder among the bundled models


@dataclass
class RegionConfig(StrictConfig):
    """Grid, sequence and answers of the body-region reader."""

    KIND: ClassVar[str] = "body-region"

    regions: tuple[str, ...] = ("breast", "pelvis")
    sequences: tuple[str, ...] = ("T2W",)
    grid_shape: tuple[int, int, int] = (32, 32, 16)
    grid_spacing: tuple[float, float, float] = (8.0, 8.0, 8.0)
    widths: tuple[int, ...] = (8, 16, 32)
    embedding: int = 32
    name: str = "reportgen-body-region"
    version: str = "0.1.0"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.regions = tuple(self.regions)
        self.sequences = tuple(self.sequences)
        self.grid_shape = tuple(int(n) for n in self.grid_shape)  # type: ignore[assignment]
        self.grid_spacing = tuple(float(s) for s in self.grid_spacing)  # type: ignore[assignment]
        self.widths = tuple(int(w) for w in self.widths)


@dataclass(frozen=True)
class RegionReading:
    """What the image shows: the region, its probability, and how typical the study is."""

    region: str
    probability: float
    distance: float  # Mahalanobis distance to the region's training studies
    threshold: float  # distances above it are unusual (99th percentile of held-out phantoms)

    @property
    def unusual(self) -> bool:
        return self.distance > self.threshold


class BodyRegionNet(nn.Module):
    """T2W at 8 mm (B, 1, X, Y, Z) -> region logits, and an embedding for distances."""

    def __init__(self, cfg: RegionConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 1
        for width in cfg.widths:
            layers += [
                nn.Conv3d(cin, width, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(4, width),
                nn.GELU(),
            ]
            cin = width
        self.encoder = nn.Sequential(*layers)
        self.project = nn.Linear(2 * cin, cfg.embedding)
        self.classify = nn.Linear(cfg.embedding, len(cfg.regions))
        regions, dim = len(cfg.regions), cfg.embedding
        self.register_buffer("centres", torch.zeros(regions, dim))
        self.register_buffer("precision", torch.eye(dim))
        self.register_buffer("threshold", torch.tensor(float("inf")))

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        deep = self.encoder(image)
        pooled = torch.cat([deep.mean(dim=(2, 3, 4)), deep.amax(dim=(2, 3, 4))], dim=1)
        return F.gelu(self.project(pooled))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(image)
        return self.classify(embedding), embedding

    def distance(self, embedding: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of each embedding to its region's training centre."""
        diff = embedding - self.centres[region]
        return torch.sqrt(torch.einsum("bi,ij,bj->b", diff, self.precision, diff).clamp_min(0))


def region_image(study: Study, cfg: RegionConfig) -> np.ndarray:
    """The study's T2W on the reader's grid (1, X, Y, Z), scaled as every model scales it."""
    from reportgen.data import study_arrays

    if "T2W" not in study.sequences:
        raise InputError(study.source, "has no T2W series; the body region is read on T2W")
    return study_arrays(study, cfg, with_mask=False)["image"]


def save_region_model(model: BodyRegionNet, folder: Path, summary: dict) -> Path:
    return save_model_folder(model, folder, REGION_TYPE, summary, card=write_region_card)


def write_region_card(folder: Path) -> None:
    """The model card: what it reads, what it was trained on, what it is not for."""
    from reportgen.checkpoint import read_model_folder, write_model_card

    cfg, summary = read_model_folder(folder, REGION_TYPE, RegionConfig)
    counts = ", ".join(f"{n} {r}" for r, n in summary.get("per_region", {}).items())
    write_model_card(
        folder,
        cfg.name,
        [
            f"""Answers: which body region a study's T2W shows ({", ".join(cfg.regions)}), and how far
  the study is from the training studies (Mahalanobis distance on its {cfg.embedding}-d
  embedding; above {summary.get("threshold", "?")} is "unusual", the 99th percentile of
  {summary.get("calibration_studies", "?")} held-out calibration phantoms).""",
            f"""Input: T2W only, on a {"x".join(map(str, cfg.grid_shape))} grid at {cfg.grid_spacing[0]:g} mm
  (RAS, centred on the body): the body's outline and large structures, not detail.""",
            f"Network: 3D CNN (widths {', '.join(map(str, cfg.widths))}), mean and max pooled.",
            f"""Trained on {summary.get("studies", "?")} phantom studies ({counts}), a quarter of them
  under another scanner's acquisition, with gamma, gain, noise, shift and mirror
  augmentation; calibration accuracy {summary.get("calibration_accuracy", "?")}.""",
            """Used by `reportgen generate` when a study has no BodyPartExamined tag (NIfTI, NRRD,
  anonymised exports) to refuse a study of another region than the model's, to choose
  the bundled model, and to warn on an unusual study. Reproduce: `make region-model`.""",
            """A region it was not trained on (head, knee, prostate) is answered as the nearer of
  breast or pelvis; the distance, not the answer, is what flags such a study.""",
        ],
    )


def load_region_model(folder: Path) -> BodyRegionNet:
    """Weights through safetensors with strict keys."""
    return load_model_folder(folder, REGION_TYPE, RegionConfig, BodyRegionNet)


@torch.no_grad()
def read_region(model: BodyRegionNet, study: Study) -> RegionReading:
    """The region the study's T2W shows, with its probability and distance."""
    image = torch.from_numpy(region_image(study, model.cfg))[None]
    logits, embedding = model(image)
    probs = logits.softmax(dim=1)[0]
    best = int(probs.argmax())
    distance = float(model.distance(embedding, torch.tensor([best]))[0])
    return RegionReading(
        model.cfg.regions[best], round(float(probs[best]), 4), distance, float(model.threshold)
    )
