"""What `reportgen pretrain` hands the MAE trainer: the studies and the lesion prior.

`pretrain_mae` knows nothing of files, studies or detectors; this module builds its
dataset from a folder of studies (through the one study adapter and cache) and turns
the one lesion detector into the prior that lesion-aware masking reads where a study
has no mask.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pretrain_mae.config import MAEConfig
from reportgen.data import CachedStudies, build_cache, discover_studies
from reportgen.errors import InputError
from reportgen.model.detector import (
    LesionDetector,
    lesion_probability,
    load_detector,
    save_detector,
)
from reportgen.model.detector_training import fit_detector
from reportgen.model.mae_training import DatasetFactory, LesionPrior

DETECTOR_BATCH = 4
DETECTOR_LR = 2e-3


def study_dataset(data: Path, cache_dir: Path) -> DatasetFactory:
    """The studies under `data`, prepared on a config's grid and cached in `cache_dir`."""
    sources = discover_studies(data)

    def build(cfg: MAEConfig) -> CachedStudies:
        return CachedStudies(build_cache(sources, cfg, cache_dir))

    return build


def train_standalone_detector(dataset: CachedStudies, out: Path, steps: int, seed: int) -> dict:
    """Fit the lesion detector on the MAE grid (studies with masks) and save it in `out`."""
    items = [dataset[i] for i in range(len(dataset))]
    has_mask = [bool(item["has_mask"]) for item in items]
    if not any(has_mask):
        raise InputError(out, "no study in --data has a lesion mask to train the detector on")
    images = torch.stack([item["image"] for item in items])
    present = torch.stack([item["present"] for item in items])
    lesion = torch.stack([item["lesion"] for item in items])
    torch.manual_seed(seed)
    detector = LesionDetector(images.shape[1])
    loss = fit_detector(
        detector, images, present, lesion, has_mask, steps, DETECTOR_BATCH, DETECTOR_LR, seed
    )
    stats = {"trained_on": sum(has_mask), "steps": steps, "final_loss": loss}
    save_detector(detector, out, {"grid_shape": list(images.shape[2:]), **stats})
    return stats


def detector_prior(folder: Path, cfg: MAEConfig) -> LesionPrior:
    """The detector in `folder` as a lesion prior on the MAE grid of `cfg`."""
    detector, config = load_detector(folder)
    if config["in_channels"] != len(cfg.sequences) or config.get("grid_shape") != list(
        cfg.grid_shape
    ):
        raise InputError(folder, "this detector was trained for another grid or sequence set")

    def prior(images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return lesion_probability(detector.to(images.device), images, present)

    return prior
