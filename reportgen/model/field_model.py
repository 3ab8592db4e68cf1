"""A staging reader's folder: config.json, model.safetensors, training_summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from pretrain_mae.checkpoint import load_weights, read_config, write_checkpoint
from pretrain_mae.errors import PretrainError
from reportgen.errors import InputError
from reportgen.model.field_reader import READER_TYPE, FieldReader, FieldReaderConfig

SUMMARY = "training_summary.json"


def save_reader(model: FieldReader, folder: Path, summary: dict | None = None) -> Path:
    extra = {SUMMARY: json.dumps(summary, indent=2).encode()} if summary else None
    return write_checkpoint(
        folder, dict(model.state_dict()), model.cfg.to_dict(), READER_TYPE, extra_files=extra
    )


def load_reader(folder: Path, device: str = "cpu") -> FieldReader:
    """Weights through safetensors with strict keys; a config that does not fit is an error."""
    try:
        cfg = FieldReaderConfig.from_dict(read_config(folder, READER_TYPE))
        model = load_weights(FieldReader(cfg), folder, device)
    except PretrainError as exc:
        raise InputError(exc.path, exc.problem) from exc
    except RuntimeError as exc:  # a tensor of another shape than the config builds
        raise InputError(folder, "weights do not fit the config (tensor shapes differ)") from exc
    return model.to(device).eval()
