"""The project's one checkpoint convention: a folder with `config.json` + `model.safetensors`.

Every model (MAE encoder, report model, lesion detector, PPO state, reward model) is
saved and loaded through here, as Hugging Face does: the config names its `model_type`,
weights are safetensors only (never pickle), keys are checked strictly (a missing or
unexpected tensor is an error naming it), and a folder is written to a temporary name
and renamed, so a crash never leaves half a checkpoint. Trainer state needed to resume
(optimiser, scheduler) goes in `trainer_state.pt`, read back with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pretrain_mae.errors import PretrainError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "trainer_state.pt"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module itself, under DDP or torch.compile."""
    return getattr(model, "module", getattr(model, "_orig_mod", model))


def write_checkpoint(
    folder: Path,
    weights: dict[str, torch.Tensor],
    config: dict,
    model_type: str,
    state: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write config.json (with `model_type`), model.safetensors and extras into `folder`.

    A new folder is built under a temporary name and renamed; into an existing folder
    (a training run's output, holding its logs) each file is written to a temporary
    name and replaced, config last, so a reader never sees a half-written file."""
    folder = Path(folder)
    fresh = not folder.exists()
    target = folder.with_name(f".{folder.name}.tmp") if fresh else folder
    if fresh:
        shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)

    def put(name: str, write) -> None:
        part = target / f".{name}.partial"
        write(part)
        os.replace(part, target / name)

    tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    meta = {"format": "pt", "model_type": model_type}
    put(WEIGHTS, lambda path: save_file(tensors, str(path), metadata=meta))
    if state is not None:
        put(STATE, lambda path: torch.save(state, path))
    for name, payload in (extra_files or {}).items():
        put(name, lambda path, payload=payload: path.write_bytes(payload))
    text = json.dumps({"model_type": model_type, **config}, indent=2)
    put(CONFIG, lambda path: path.write_text(text))
    if fresh:
        target.rename(folder)
    return folder


def read_config(folder: Path, model_type: str, what: str | None = None) -> dict:
    """The config of a checkpoint folder of `model_type` (without the `model_type` key);
    `what` names the kind of checkpoint in errors ("pretraining")."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise PretrainError(
            folder, f"not a {what or model_type} checkpoint (needs {CONFIG} and {WEIGHTS})"
        )
    try:
        data = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PretrainError(folder / CONFIG, "not valid JSON") from exc
    found = data.pop("model_type", None) if isinstance(data, dict) else None
    if found != model_type:
        raise PretrainError(folder, f"holds a {found or 'unknown'} model, not a {model_type} model")
    return data


def load_weights(
    model: torch.nn.Module,
    folder: Path,
    device: str | torch.device = "cpu",
    derived: tuple[str, ...] = (),
) -> torch.nn.Module:
    """Load model.safetensors into `model` with strict keys; `derived` names tensors the
    model rebuilds itself (tied weights), which the file may leave out."""
    state = load_file(str(Path(folder) / WEIGHTS), device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in derived]
    if missing or unexpected:
        raise PretrainError(
            folder,
            f"weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )
    return model


def read_weights(folder: Path, prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's model.safetensors (those whose names start with one
    of `prefixes`, when given): for copying part of one model into another."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise PretrainError(folder, f"not a checkpoint (no {WEIGHTS})")
    try:
        state = load_file(str(path))
    except (OSError, ValueError) as exc:  # safetensors raises SafetensorError (a ValueError)
        raise PretrainError(path, f"unreadable weights ({exc})") from exc
    return {k: v for k, v in state.items() if not prefixes or k.startswith(prefixes)}


def read_state(folder: Path) -> dict:
    """Trainer state saved beside the weights (tensors and plain data only)."""
    return torch.load(Path(folder) / STATE, weights_only=True, map_location="cpu")


def weights_sha256(folder: Path) -> str:
    """SHA-256 of a checkpoint's weights: the hash reports and logs cite."""
    digest = hashlib.sha256()
    with (Path(folder) / WEIGHTS).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the MAE itself ------------------------------------------------------------------------

MAE_TYPE = "reportgen-mae3d"


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    cfg,
    state: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """An MAE checkpoint (`cfg` is its MAEConfig)."""
    return write_checkpoint(
        folder, unwrap(model).state_dict(), cfg.to_dict(), MAE_TYPE, state, extra_files
    )


def load_pretrained(folder: Path, device: str | torch.device = "cpu"):
    """An MAE from a checkpoint folder (weights loaded with safetensors, strict keys)."""
    from pretrain_mae.config import MAEConfig
    from pretrain_mae.model import MaskedAutoencoder3D

    cfg = MAEConfig.load(folder)
    model = MaskedAutoencoder3D(cfg)
    return load_weights(model, folder, device).to(device)
