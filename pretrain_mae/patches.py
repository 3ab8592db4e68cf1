"""Tokens: (sequence, 3D patch) pairs, their pixels, ids and fixed 3D positions."""

from __future__ import annotations

import torch

from pretrain_mae.config import MAEConfig


def patchify(images: torch.Tensor, cfg: MAEConfig) -> torch.Tensor:
    """(B, S, X, Y, Z) -> (B, S * N, P): sequence-major, patches in x, y, z order."""
    b, s = images.shape[:2]
    (nx, ny, nz), (px, py, pz) = cfg.patches_per_axis, cfg.patch
    x = images.reshape(b, s, nx, px, ny, py, nz, pz)
    x = x.permute(0, 1, 2, 4, 6, 3, 5, 7)
    return x.reshape(b, s * nx * ny * nz, px * py * pz)


def unpatchify(tokens: torch.Tensor, cfg: MAEConfig) -> torch.Tensor:
    b = tokens.shape[0]
    s = len(cfg.sequences)
    (nx, ny, nz), (px, py, pz) = cfg.patches_per_axis, cfg.patch
    x = tokens.reshape(b, s, nx, ny, nz, px, py, pz).permute(0, 1, 2, 5, 3, 6, 4, 7)
    return x.reshape(b, s, nx * px, ny * py, nz * pz)


def token_ids(cfg: MAEConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence index and spatial patch index of every token."""
    n, s = cfg.num_patches, len(cfg.sequences)
    return torch.arange(s).repeat_interleave(n), torch.arange(n).repeat(s)


def sincos_3d(dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Fixed 3D sine-cosine position embedding (N, dim), as MAE's 2D one extended to depth."""
    per_axis = (dim // 6) * 2
    axes = [torch.arange(n, dtype=torch.float32) for n in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    omega = 1.0 / 10000 ** (torch.arange(per_axis // 2, dtype=torch.float32) / (per_axis // 2))
    parts = []
    for axis in range(3):
        angles = coords[:, axis : axis + 1] * omega[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < dim:
        emb = torch.cat([emb, torch.zeros(emb.shape[0], dim - emb.shape[1])], dim=1)
    return emb
