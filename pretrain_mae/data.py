"""Studies for pretraining: discovered on disk, preprocessed once, cached as .npz.

The first pass resamples each study onto the model grid (reportgen.preprocessing) and
stores float16 images, the present-sequence flags and the lesion mask (if any) in a
cache folder keyed by the study's files and the grid, so later epochs, and later runs,
never re-read NIfTI. Preparation runs in parallel processes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pretrain_mae.config import MAEConfig
from reportgen.parallel import parallel_map


@dataclass(frozen=True)
class StudySource:
    study_id: str
    path: Path


def discover_studies(data: Path) -> list[StudySource]:
    """Study folders under `data` (a synth manifest's, or any folder of study folders / NIfTI files)."""
    from reportgen.errors import InputError

    if not data.is_dir():
        raise InputError(data, "not a folder")
    manifest = data / "manifest.jsonl"
    if manifest.exists():
        rows = [
            json.loads(line)
            for line in manifest.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        return [StudySource(r["id"], data / r["dir"]) for r in rows]
    sources = []
    for child in sorted(data.iterdir()):
        if child.is_dir() and any(p.name.endswith((".nii", ".nii.gz")) for p in child.iterdir()):
            sources.append(StudySource(child.name, child))
        elif child.is_file() and child.name.endswith((".nii", ".nii.gz")):
            sources.append(StudySource(child.name.split(".")[0], child))
    if not sources:
        raise InputError(data, "no studies found (study folders, NIfTI files or a manifest.jsonl)")
    return sources


def _fingerprint(source: StudySource, cfg: MAEConfig) -> str:
    paths = sorted(source.path.rglob("*")) if source.path.is_dir() else [source.path]
    h = hashlib.sha256(json.dumps([cfg.grid_shape, cfg.grid_spacing, list(cfg.sequences)]).encode())
    for p in paths:
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def study_arrays(study, cfg: MAEConfig) -> dict[str, np.ndarray]:
    """A loaded study on the model's grid: image (S, X, Y, Z) in `cfg.sequences` order,
    which sequences are present, the lesion mask (zeros if none) and the grid's affine.
    Training, caching and inference all go through here, so they see the same input."""
    from reportgen.io.sequences import PROTOCOL
    from reportgen.preprocessing import GridSpec, prepare_study

    ready = prepare_study(study, GridSpec(tuple(cfg.grid_shape), tuple(cfg.grid_spacing)))
    present = np.array([name in ready.sequences for name in cfg.sequences])
    image = np.stack(
        [
            ready.image[PROTOCOL.index(n)]
            if n in PROTOCOL
            else np.zeros(cfg.grid_shape, np.float32)
            for n in cfg.sequences
        ]
    )
    mask = ready.mask if ready.mask is not None else np.zeros(cfg.grid_shape, np.int16)
    return {
        "image": image.astype(np.float32),
        "present": present,
        "mask": mask,
        "has_mask": np.array(ready.mask is not None),
        "affine": np.asarray(ready.affine),
    }


def _prepare(args: tuple[StudySource, str, MAEConfig]) -> str:
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
    cfg: MAEConfig,
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


def collate(items: list[dict]) -> dict:
    return {
        "image": torch.stack([i["image"] for i in items]),
        "present": torch.stack([i["present"] for i in items]),
        "lesion": torch.stack([i["lesion"] for i in items]),
        "has_mask": torch.tensor([i["has_mask"] for i in items]),
        "index": torch.tensor([i["index"] for i in items]),
    }
