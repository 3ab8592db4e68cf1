"""The segmentation loss every outline trains with: cross-entropy with small connected
parts weighted up, plus soft Dice. A one-channel network (the breast lesion detector)
gets its binary form, a network with a channel per class (the staging outline) the
softmax form; the size weighting is one rule with its strength as config. Drafting
never imports this module."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

DICE_MODES = ("per_study", "pooled", "present")

# The binary form's weight on lesion voxels: a lesion is a tiny fraction of the volume.
LESION_WEIGHT = 4.0


@dataclass(frozen=True)
class SizeWeighting:
    """Per-voxel weight of a connected part of `voxels` voxels: (reference / voxels) **
    power, between 1 and `cap`. A part of `reference` voxels or more weighs as before; a
    smaller one more, so a 5 mm focus or a 10-voxel deposit is not outvoted by the mass
    beside it."""

    reference: float = 64.0
    power: float = 1.0
    cap: float = 16.0


# The detector's: sqrt(64 / voxels), at most 8 (a focus counts, without outweighing masses).
DETECTOR_WEIGHTING = SizeWeighting(64.0, 0.5, 8.0)
# The staging outline's: 64 / voxels, at most 16. A peritoneal deposit or an implant is
# 5-15 voxels beside a primary of thousands; unweighted, the outline learned to miss every
# one (measured: none of 12 training studies' deposits outlined).
OUTLINE_WEIGHTING = SizeWeighting(64.0, 1.0, 16.0)


def part_size_weights(labels: torch.Tensor, classes: int, weighting: SizeWeighting) -> torch.Tensor:
    """Per-voxel loss weights (B, X, Y, Z) for integer `labels`: 1 outside every part, and
    inside each connected part of each class 1..classes-1 the `weighting` of its size."""
    array = labels.detach().cpu().numpy()
    weights = np.ones(array.shape, np.float32)
    for b in range(array.shape[0]):
        for c in range(1, classes):
            parts, n = ndimage.label(array[b] == c)
            if not n:
                continue
            sizes = np.bincount(parts.ravel())[1:].astype(np.float32)
            per_part = np.clip(
                (np.float32(weighting.reference) / sizes) ** weighting.power, 1.0, weighting.cap
            )
            weights[b][parts > 0] = per_part[parts[parts > 0] - 1]
    return torch.from_numpy(weights).to(labels.device)


def _soft_dice(probs: torch.Tensor, truth: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Soft Dice, smoothed by 1, summed over `dims`."""
    return (2 * (probs * truth).sum(dims) + 1) / (probs.sum(dims) + truth.sum(dims) + 1)


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    dice: str = "per_study",
) -> torch.Tensor:
    """Weighted cross-entropy plus (1 - soft Dice) over the foreground classes.

    - One channel (`logits` (B, X, Y, Z), `labels` a 0/1 mask of that shape): binary
      cross-entropy with lesion voxels weighted `LESION_WEIGHT`; `dice` must be
      "per_study": smoothed by 1, on a lesion-free study it is lowest when nothing is
      marked, so it suppresses false candidates (Dice pooled over the batch read worse
      on held-out phantoms: docs/report_model.md, "Lesion-centred reading").
    - A channel per class (`logits` (B, C, x, y, z), upsampled to `labels` (B, X, Y, Z)):
      cross-entropy with background 0.1, the first class 1 and the others 2 per voxel, as
      a weighted mean; Dice "pooled" over the batch per class, or over the classes the
      batch holds only ("present"): a class absent from most batches (O-RADS implants)
      otherwise scores Dice 1 / (its probability mass + 1) there, which pushes its
      probability to zero everywhere (measured: implants at most 0.11 on training studies).

    `weights` (`part_size_weights`) multiply each voxel's cross-entropy."""
    if dice not in DICE_MODES:
        raise ValueError(f"dice must be one of {DICE_MODES}, not {dice!r}")
    if logits.dim() == labels.dim():
        if dice != "per_study":
            raise ValueError("a one-channel outline takes its Dice per study")
        bce = F.binary_cross_entropy_with_logits(
            logits, labels, weight=weights, pos_weight=torch.tensor(LESION_WEIGHT)
        )
        dims = tuple(range(1, logits.ndim))
        return bce + (1 - _soft_dice(torch.sigmoid(logits), labels, dims)).mean()
    seg = F.interpolate(logits, size=labels.shape[1:], mode="trilinear")
    n = logits.shape[1]
    voxel = torch.tensor([0.1, 1.0] + [2.0] * (n - 2))[labels]
    if weights is not None:
        voxel = voxel * weights
    nll = F.cross_entropy(seg, labels, reduction="none")
    ce = (nll * voxel).sum() / voxel.sum()
    probs = seg.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(labels, n).permute(0, 4, 1, 2, 3)[:, 1:].float()
    pooled = (0, 2, 3, 4)
    per_class = _soft_dice(probs, onehot, pooled)
    if dice == "present":
        held = onehot.sum(dim=pooled) > 0
        return ce + ((1 - per_class) * held).sum() / held.sum().clamp_min(1)
    return ce + (1 - per_class).mean()
