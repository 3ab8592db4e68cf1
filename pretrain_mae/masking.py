"""Which tokens the encoder sees: random, lesion-aware or anatomy-preserving masking,
independent, joint or complementary across sequences, with sequence dropout.

Everything is batched torch on the model's device, drawn from a torch.Generator, with no
per-step host work. Weighted sampling without replacement uses the Efraimidis–Spirakis
key log(u) / w: a token of keep-weight w is kept with probability that grows with w, and
exactly (1 - mask ratio) of each study's available tokens are kept; studies with fewer
sequences keep fewer tokens, padded (and masked out of attention) to a rectangular batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pretrain_mae.config import MAEConfig

STRATEGIES = ("random", "lesion", "anatomy")
CROSS = ("independent", "joint", "complementary")


@dataclass(frozen=True)
class MaskingOptions:
    strategy: str = "random"
    cross: str = "independent"
    mask_ratio: float = 0.75
    # Lesion-aware mix: relative chance to stay visible. Cores and background are masked
    # preferentially, borders kept visible, so the encoder must model what makes a margin.
    keep_core: float = 0.3
    keep_border: float = 3.0
    keep_background: float = 1.0
    # Anatomy-preserving: landmark patches (the body's outline) stay visible more often.
    keep_landmark: float = 4.0
    sequence_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown masking {self.strategy!r}; choose from {', '.join(STRATEGIES)}"
            )
        if self.cross not in CROSS:
            raise ValueError(
                f"unknown cross-sequence mode {self.cross!r}; choose from {', '.join(CROSS)}"
            )
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError("mask ratio must be between 0 and 1")


@dataclass
class Mask:
    keep: torch.Tensor  # (B, K) visible token indices (padded to the batch's largest count)
    keep_valid: torch.Tensor  # (B, K) bool: which of `keep` are real (the rest is padding)
    target: torch.Tensor  # (B, L) bool: masked tokens of available sequences (the loss)
    available: torch.Tensor  # (B, L) bool: tokens of sequences the study has (after dropout)


def patch_fractions(volume: torch.Tensor, cfg: MAEConfig) -> torch.Tensor:
    """Mean of a (B, X, Y, Z) volume in each patch: (B, N)."""
    pooled = F.avg_pool3d(volume[:, None].float(), kernel_size=cfg.patch, stride=cfg.patch)
    return pooled.reshape(volume.shape[0], -1)


def _dilate(patch_map: torch.Tensor, cfg: MAEConfig) -> torch.Tensor:
    grid = patch_map.reshape(patch_map.shape[0], 1, *cfg.patches_per_axis)
    return F.max_pool3d(grid, kernel_size=3, stride=1, padding=1).reshape(patch_map.shape)


def lesion_weights(lesion: torch.Tensor, cfg: MAEConfig, opts: MaskingOptions) -> torch.Tensor:
    """Per-patch keep weights (B, N) from a lesion prior (mask or detector probability).

    The prior is read as a segmentation (probability >= 0.5): a detector's probability is
    above zero everywhere, so "any lesion in the patch" on the raw map marked every patch
    as a lesion border and lesion-aware masking drew the same masks as random masking."""
    frac = patch_fractions((lesion >= 0.5).float(), cfg)
    core = frac > 0.5
    near = _dilate((frac > 0.0).float(), cfg) > 0
    border = near & ~core
    w = torch.full_like(frac, opts.keep_background)
    w[border] = opts.keep_border
    w[core] = opts.keep_core
    return w


def anatomy_weights(reference: torch.Tensor, cfg: MAEConfig, opts: MaskingOptions) -> torch.Tensor:
    """Per-patch keep weights (B, N): patches on the body outline are landmarks."""
    body = (reference > 0.05).float()
    frac = patch_fractions(body, cfg)
    landmark = (frac > 0.1) & (frac < 0.9)
    w = torch.ones_like(frac)
    w[landmark] = opts.keep_landmark
    return w


def drop_sequences(present: torch.Tensor, rate: float, draws: torch.Tensor) -> torch.Tensor:
    """Hide each present sequence when its uniform draw is below `rate`, but never every
    sequence a study has (its first present one stays)."""
    if rate <= 0:
        return present
    drop = (draws < rate) & present
    first = F.one_hot(present.float().argmax(1), present.shape[1]).bool()
    return present & ~(drop & ~first)


def drop_groups(
    present: torch.Tensor, groups: list[list[int]], rate: float, draws: torch.Tensor
) -> torch.Tensor:
    """Hide each group of sequences together (all its members) when its draw (B, G) is below
    `rate`: studies lack a whole kind of image (every dynamic phase, or DWI with its ADC)
    far more often than one image of a kind. The first present sequence always stays."""
    if rate <= 0 or not groups:
        return present
    drop = torch.zeros_like(present)
    for g, members in enumerate(groups):
        drop[:, members] |= (draws[:, g] < rate)[:, None]
    first = F.one_hot(present.float().argmax(1), present.shape[1]).bool()
    return present & ~(drop & present & ~first)


def draw_mask(
    cfg: MAEConfig,
    present: torch.Tensor,
    opts: MaskingOptions,
    generator: torch.Generator,
    lesion: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> Mask:
    """Draw visible and target tokens for a batch.

    present (B, S) bool; lesion (B, X, Y, Z) prior in [0, 1] (needed for "lesion");
    reference (B, X, Y, Z) an image for the body outline (needed for "anatomy").
    """
    device = present.device
    b, s, n = present.shape[0], len(cfg.sequences), cfg.num_patches

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=device).clamp_min(1e-12)

    present = present.clone()
    present = drop_sequences(present, opts.sequence_dropout, uniform(b, s))
    if opts.strategy == "lesion":
        if lesion is None:
            raise ValueError("lesion-aware masking needs a lesion prior (mask or detector output)")
        weights = lesion_weights(lesion, cfg, opts)
    elif opts.strategy == "anatomy":
        if reference is None:
            raise ValueError("anatomy-preserving masking needs a reference image")
        weights = anatomy_weights(reference, cfg, opts)
    else:
        weights = torch.ones(b, n, device=device)
    available = present[:, :, None].expand(b, s, n)  # (B, S, N)
    if opts.cross == "independent":
        key = uniform(b, s, n).log() / weights[:, None, :]
    else:
        location_key = uniform(b, 1, n).log() / weights[:, None, :]
        if opts.cross == "joint":  # a location is visible or masked in every sequence at once
            key = location_key.expand(b, s, n) + 1e-6 * uniform(b, s, n)
        else:  # complementary: one random sequence per location first, then a second ...
            rank = torch.argsort(
                torch.argsort(uniform(b, s, n) + (~available).float() * 2, dim=1), dim=1
            )
            key = location_key - rank.float() * 1e4
    key = key.masked_fill(~available, float("-inf")).reshape(b, s * n)
    available = available.reshape(b, s * n)
    n_keep = ((1.0 - opts.mask_ratio) * available.sum(1)).long().clamp(min=1)  # (B,)
    keep = torch.topk(key, int(n_keep.max()), dim=1).indices
    keep_valid = torch.arange(keep.shape[1], device=device)[None, :] < n_keep[:, None]
    visible = torch.zeros_like(available).scatter_(1, keep, keep_valid)
    return Mask(keep=keep, keep_valid=keep_valid, target=available & ~visible, available=available)
