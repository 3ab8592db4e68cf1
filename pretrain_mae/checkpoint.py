"""Checkpoint directories: safetensors weights + config.json (+ trainer_state.pt to resume).

Written to a temporary folder and renamed, so a crash never leaves a half checkpoint.
Trainer state is read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pretrain_mae.config import MAEConfig
from pretrain_mae.model import MaskedAutoencoder3D

WEIGHTS = "model.safetensors"
STATE = "trainer_state.pt"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", getattr(model, "_orig_mod", model))


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    cfg: MAEConfig,
    state: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg.save(tmp)
    weights = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    save_file(
        weights, str(tmp / WEIGHTS), metadata={"format": "pt", "model_type": "reportgen-mae3d"}
    )
    if state is not None:
        torch.save(state, tmp / STATE)
    for name, payload in (extra_files or {}).items():
        (tmp / name).write_bytes(payload)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def load_pretrained(folder: Path, device: str | torch.device = "cpu") -> MaskedAutoencoder3D:
    """A model from a checkpoint directory (weights loaded with safetensors)."""
    from reportgen.errors import InputError

    if not (folder / WEIGHTS).exists() or not (folder / "config.json").exists():
        raise InputError(folder, f"not a pretraining checkpoint (needs config.json and {WEIGHTS})")
    cfg = MAEConfig.load(folder)
    model = MaskedAutoencoder3D(cfg)
    missing, unexpected = model.load_state_dict(
        load_file(str(folder / WEIGHTS), device=str(device)), strict=False
    )
    if missing or unexpected:
        raise InputError(
            folder,
            f"weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )
    return model.to(device)


def load_state(folder: Path) -> dict:
    return torch.load(folder / STATE, weights_only=True, map_location="cpu")


def weights_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
