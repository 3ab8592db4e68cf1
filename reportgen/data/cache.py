"""Prepared studies cached as .npz, so later epochs and later runs never re-read NIfTI.

The first pass resamples each study onto the model grid (`study_arrays`) and stores
float16 images, the present-sequence flags and the lesion mask (if any) in a cache
folder keyed by the study's files and the grid. Preparation runs in parallel processes.
Items have the layout `pretrain_mae.data.collate` batches.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from reportgen.data.adapter import GridConfig, study_arrays
from reportgen.data.sources import StudySource
from reportgen.parallel import parallel_map


def _fingerprint(source: StudySource, cfg: GridConfig) -> str:
    paths = sorted(source.path.rglob("*")) if source.path.is_dir() else [source.path]
    h = hashlib.sha256(json.dumps([cfg.grid_shape, cfg.grid_spacing, list(cfg.sequences)]).encode())
    for p in paths:
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _prepare(args: tuple[StudySource, str, GridConfig]) -> str:
    from reportgen.io import load_study

    source, target, cfg = args
    arrays = study_arrays(load_study(source.path), cfg)
    tmp = f"{target}.tmp.npz"
    np.savez(
        tmp,
        image=arrays["image"].astype(np.float16),
        present=arrays["present"],
        mask=arrays["mask"].astype(np.uint8),
        has_mask=arrays["has_mask"],
        affine=arrays["affine"],
    )
    os.replace(tmp, target)
    return target


def build_cache(
    sources: list[StudySource],
    cfg: GridConfig,
    cache_dir: Path,
    workers: int | None = None,
    progress=None,
) -> list[Path]:
    """Cached .npz files for every study (prepared in parallel where missing)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    targets = [cache_dir / f"{s.study_id}-{_fingerprint(s, cfg)}.npz" for s in sources]
    todo = [(s, str(t), cfg) for s, t in zip(sources, targets, strict=True) if not t.exists()]
    for _ in parallel_map(_prepare, todo, workers):
        if progress:
            progress(1)
    return targets


class CachedStudies(Dataset):
    """Prepared studies from the cache: image (S, X, Y, Z), present (S,), lesion mask."""

    def __init__(self, files: list[Path]):
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        with np.load(self.files[index]) as data:
            return {
                "image": torch.from_numpy(data["image"].astype(np.float32)),
                "present": torch.from_numpy(data["present"]),
                "lesion": torch.from_numpy((data["mask"] > 0).astype(np.float32)),
                "has_mask": bool(data["has_mask"]),
                "index": index,
            }

    def arrays(self, index: int) -> dict[str, np.ndarray]:
        """The cached arrays themselves (lesion labels, affine) for evaluation."""
        with np.load(self.files[index]) as data:
            return {key: data[key] for key in data.files}
