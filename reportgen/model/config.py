"""Report model configuration: saved as config.json beside model.safetensors."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from reportgen.errors import ConfigError

FREEZE_MODES = ("frozen", "partial", "full")


@dataclass
class ReportModelConfig:
    template: str
    encoder: dict  # the MAE encoder's config (pretrain_mae.config.MAEConfig.to_dict())
    encoder_source_sha256: str | None = None  # which pretraining checkpoint it came from
    freeze: str = "frozen"  # frozen | partial (last `trainable_blocks`) | full
    trainable_blocks: int = 2
    use_multiscale: bool = False
    n_embd: int = 128
    n_layer: int = 3
    n_head: int = 4
    n_positions: int = 256
    vocab_size: int = 0
    contrastive_dim: int = 64
    contrastive_weight: float = 0.1
    temperature: float = 0.07
    sequence_dropout: float = 0.2
    name: str = "reportgen-report"
    version: str = "0.1.0"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.freeze not in FREEZE_MODES:
            raise ConfigError(f"unknown freeze mode {self.freeze!r}; choose one of {FREEZE_MODES}")
        if self.n_embd % self.n_head:
            raise ConfigError("n_embd must be divisible by n_head")

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(
            json.dumps({"model_type": "reportgen-report", **asdict(self)}, indent=2)
        )

    @classmethod
    def load(cls, folder: Path) -> ReportModelConfig:
        data = json.loads((folder / "config.json").read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Decoder sizes; the encoder's size comes from the pretraining checkpoint.
PRESETS: dict[str, dict] = {
    "tiny": dict(n_embd=32, n_layer=1, n_head=2, contrastive_dim=16),
    "base": dict(),
    "large": dict(n_embd=512, n_layer=6, n_head=8, contrastive_dim=256, freeze="partial"),
}
