"""Save and load a small model's folder: config.json, model.safetensors, training summary.

The staging readers and the body-region reader share this: weights only through
safetensors with strict keys, and a folder whose config does not fit its weights is one
clear error (exit 2), not a half-loaded model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import ClassVar, Self

from torch import nn

from pretrain_mae.checkpoint import load_weights, read_config, write_checkpoint
from pretrain_mae.errors import PretrainError
from reportgen.errors import ConfigError, InputError

SUMMARY = "training_summary.json"


class StrictConfig:
    """A dataclass config kept as config.json beside its weights: unknown keys are an
    error, so a config is never half-read (a key a newer version wrote, or a typo, would
    otherwise build another model than the one trained). `KIND` names it in the error."""

    KIND: ClassVar[str] = "model"

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        unknown = set(data) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ConfigError(f"unknown {cls.KIND} config keys: {sorted(unknown)}")
        return cls(**data)


def save_model_folder(model: nn.Module, cfg, folder: Path, model_type: str, summary: dict | None):
    """Weights, `cfg.to_dict()` as config.json (with `model_type`) and the summary."""
    extra = {SUMMARY: json.dumps(summary, indent=2).encode()} if summary else None
    write_checkpoint(folder, dict(model.state_dict()), cfg.to_dict(), model_type, extra_files=extra)


def load_model_folder(folder: Path, model_type: str, config_cls, model_cls, device: str = "cpu"):
    """`model_cls(config_cls.from_dict(config))` with the folder's weights, in eval mode."""
    try:
        cfg = config_cls.from_dict(read_config(folder, model_type))
        model = load_weights(model_cls(cfg), folder, device)
    except PretrainError as exc:
        raise InputError(exc.path, exc.problem) from exc
    except RuntimeError as exc:  # a tensor of another shape than the config builds
        raise InputError(folder, "weights do not fit the config (tensor shapes differ)") from exc
    return model.to(device).eval()


def read_summary(folder: Path) -> dict:
    path = Path(folder) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}
