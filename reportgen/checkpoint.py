"""The project's one checkpoint convention: a folder with `config.json` + `model.safetensors`.

Every model (MAE encoder, report model, lesion detector, staging readers, body region,
PPO state) is saved and loaded through here, its config a `StrictConfig`, as Hugging
Face does: the config names its `model_type`,
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
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import ClassVar, Self, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from reportgen.errors import ConfigError, InputError

WEIGHTS = "model.safetensors"
T = TypeVar("T")
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
        raise InputError(
            folder, f"not a {what or model_type} checkpoint (needs {CONFIG} and {WEIGHTS})"
        )
    try:
        data = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(folder / CONFIG, "not valid JSON") from exc
    found = data.pop("model_type", None) if isinstance(data, dict) else None
    if found != model_type:
        raise InputError(folder, f"holds a {found or 'unknown'} model, not a {model_type} model")
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
        raise InputError(
            folder,
            f"weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )
    return model


def read_weights(folder: Path, prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's model.safetensors (those whose names start with one
    of `prefixes`, when given): for copying part of one model into another."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise InputError(folder, f"not a checkpoint (no {WEIGHTS})")
    try:
        state = load_file(str(path))
    except (OSError, ValueError) as exc:  # safetensors raises SafetensorError (a ValueError)
        raise InputError(path, f"unreadable weights ({exc})") from exc
    return {k: v for k, v in state.items() if not prefixes or k.startswith(prefixes)}


def rename_on_load(module: nn.Module, rename: Callable[[str], str]) -> None:
    """Let `module` load tensors saved under older names: `rename` maps a name (relative
    to `module`) to today's before the strict key check sees it, so a checkpoint written
    before a refactor still loads, strictly and unchanged on disk."""

    def hook(_module: nn.Module, state: dict, prefix: str, *_args) -> None:
        for key in [k for k in state if k.startswith(prefix)]:
            renamed = prefix + rename(key[len(prefix) :])
            if renamed != key:
                state[renamed] = state.pop(key)

    module.register_load_state_dict_pre_hook(hook)


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


# -- configs and small models' folders ------------------------------------------------

SUMMARY = "training_summary.json"


def strict_config(cls: type[T], data: dict, kind: str) -> T:
    """`cls(**data)` for a dataclass config, with an unknown key an error naming it: a
    config is never half-read (a key a newer version wrote, or a typo, would otherwise
    build another model than the one trained)."""
    unknown = set(data) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"unknown {kind} config keys: {sorted(unknown)}")
    return cls(**data)


class StrictConfig:
    """Base of our dataclass configs kept as config.json: `from_dict` is `strict_config`;
    `KIND` names the config in its errors."""

    KIND: ClassVar[str] = "model"

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return strict_config(cls, data, cls.KIND)


def save_model_folder(
    model: nn.Module,
    folder: Path,
    model_type: str,
    summary: dict | None,
    card: Callable[[Path], object] | None = None,
) -> Path:
    """Weights, `model.cfg.to_dict()` as config.json (with `model_type`), the training
    summary, and the model card `card(folder)` writes (from what was just saved)."""
    extra = {SUMMARY: json.dumps(summary, indent=2).encode()} if summary else None
    config = model.cfg.to_dict()  # type: ignore[union-attr,operator]
    write_checkpoint(folder, dict(model.state_dict()), config, model_type, extra_files=extra)
    if card is not None:
        card(folder)
    return folder


def read_model_folder(folder: Path, model_type: str, config_cls: type[T]) -> tuple[T, dict]:
    """A small model's config and training summary, as its model card reads them."""
    return config_cls.from_dict(read_config(folder, model_type)), read_summary(folder)  # type: ignore[attr-defined]


def load_model_folder(folder: Path, model_type: str, config_cls, model_cls, device: str = "cpu"):
    """`model_cls(config_cls.from_dict(config))` with the folder's weights, in eval mode."""
    cfg = config_cls.from_dict(read_config(folder, model_type))
    try:
        model = load_weights(model_cls(cfg), folder, device)
    except RuntimeError as exc:  # a tensor of another shape than the config builds
        raise InputError(folder, "weights do not fit the config (tensor shapes differ)") from exc
    return model.to(device).eval()


def read_summary(folder: Path) -> dict:
    path = Path(folder) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


CARD = "README.md"
PHANTOM_ONLY = (
    "Trained on synthetic phantoms: the model has never seen a patient's images and must "
    "not be used for diagnosis."
)


def refined_facts(refined: dict | None) -> list[str]:
    """A refined model's lineage as model-card facts: its parent, the reward log it learned
    from (chain head, corrections, clinicians), the method, and the guard's verdict."""
    if not refined:
        return []
    head = refined.get("log_chain_head") or {}
    guard = refined.get("guard") or {}
    verdict = (
        "not compared on held-out studies (not recommended)"
        if "recommended" not in guard
        else "RECOMMENDED"
        if guard["recommended"]
        else f"NOT RECOMMENDED (worse on held-out {', '.join(guard.get('worse_on', []))})"
    )
    return [
        f"""Refined from clinicians' corrections ({refined.get("method", "?")}): parent sha256
  {refined.get("parent_sha256", "?")}; reward log chain head {head.get("sha256", "?")} at link
  {head.get("links", "?")}; {refined.get("corrections_used", "?")} of {refined.get("corrections", "?")}
  corrections used, from {refined.get("clinicians", "?")} clinicians; guard: {verdict}.""",
    ]


def write_model_card(folder: Path, title: str, facts: list[str]) -> Path:
    """A model folder's README.md, the same shape for every model: its name, the notice,
    what it is (one bullet per fact: what it reads and answers, how it was trained, how
    to reproduce it), its weights' SHA-256, and that it is trained on phantoms only."""
    from reportgen import NOT_FOR_CLINICAL_USE

    bullets = [*facts, f"Weights sha256 {weights_sha256(folder)}.", PHANTOM_ONLY]
    lines = "\n".join(f"- {fact}" for fact in bullets)
    path = Path(folder) / CARD
    path.write_text(f"# {title}\n\n**{NOT_FOR_CLINICAL_USE}**\n\n{lines}\n")
    return path
