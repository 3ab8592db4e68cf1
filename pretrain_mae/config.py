"""Model configuration, saved beside the weights as config.json (Hugging Face style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEFAULT_SEQUENCES = ("T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3")
# MOME-style experts share attention but give each family of sequences its own MLP.
DEFAULT_FAMILIES = {
    "T2W": "t2",
    "DWI": "diffusion",
    "ADC": "diffusion",
    "DCE_0": "dce",
    "DCE_1": "dce",
    "DCE_2": "dce",
    "DCE_3": "dce",
}


@dataclass
class MAEConfig:
    name: str = "base"
    sequences: tuple[str, ...] = DEFAULT_SEQUENCES
    families: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FAMILIES))
    grid_shape: tuple[int, int, int] = (64, 64, 32)
    grid_spacing: tuple[float, float, float] = (4.0, 4.0, 4.0)
    patch: tuple[int, int, int] = (16, 16, 8)
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 6
    mlp_ratio: float = 4.0
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    modality_experts: bool = False
    multiscale_layers: tuple[int, ...] = ()
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        self.sequences = tuple(self.sequences)
        self.grid_shape = tuple(self.grid_shape)  # type: ignore[assignment]
        self.grid_spacing = tuple(float(s) for s in self.grid_spacing)  # type: ignore[assignment]
        self.patch = tuple(self.patch)  # type: ignore[assignment]
        self.multiscale_layers = tuple(self.multiscale_layers)
        for g, p in zip(self.grid_shape, self.patch, strict=True):
            if g % p:
                raise ValueError(f"grid {self.grid_shape} is not divisible by patch {self.patch}")
        if self.embed_dim % self.num_heads or self.decoder_dim % self.decoder_heads:
            raise ValueError("embedding sizes must be divisible by their head counts")
        if any(not 1 <= layer <= self.depth for layer in self.multiscale_layers):
            raise ValueError(f"multiscale_layers must lie in 1..{self.depth}")
        missing = [s for s in self.sequences if s not in self.families]
        if missing:
            raise ValueError(f"no family for sequences {missing}")

    # -- derived sizes -------------------------------------------------------------------
    @property
    def patches_per_axis(self) -> tuple[int, int, int]:
        return tuple(g // p for g, p in zip(self.grid_shape, self.patch, strict=True))  # type: ignore[return-value]

    @property
    def num_patches(self) -> int:
        x, y, z = self.patches_per_axis
        return x * y * z

    @property
    def num_tokens(self) -> int:
        return self.num_patches * len(self.sequences)

    @property
    def patch_voxels(self) -> int:
        return self.patch[0] * self.patch[1] * self.patch[2]

    @property
    def family_names(self) -> list[str]:
        return sorted(set(self.families[s] for s in self.sequences))

    @property
    def sequence_family_ids(self) -> list[int]:
        names = self.family_names
        return [names.index(self.families[s]) for s in self.sequences]

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PRESETS: dict[str, dict] = {
    # Seconds on a laptop CPU: for tests.
    "tiny": dict(
        grid_shape=(32, 32, 16),
        grid_spacing=(8.0, 8.0, 8.0),
        patch=(8, 8, 4),
        embed_dim=32,
        depth=2,
        num_heads=2,
        decoder_dim=32,
        decoder_depth=1,
        decoder_heads=2,
    ),
    # This machine's default (2-core CPU): ~3 M encoder parameters, 448 tokens per study.
    "base": dict(),
    # ViT-L-like, for a GPU: 1024 wide, 24 deep, a finer grid.
    "large": dict(
        grid_shape=(128, 128, 64),
        grid_spacing=(2.0, 2.0, 2.0),
        patch=(16, 16, 8),
        embed_dim=1024,
        depth=24,
        num_heads=16,
        decoder_dim=512,
        decoder_depth=8,
        decoder_heads=16,
        drop_path=0.1,
    ),
}


def preset(name: str, **overrides) -> MAEConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; choose from {', '.join(PRESETS)}")
    return MAEConfig(name=name, **{**PRESETS[name], **overrides})
