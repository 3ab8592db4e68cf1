"""The lesion detector: one small 3D U-Net, its loss, its trainer and its checkpoint.

It marks where lesions are likely, for two users: the report model reads a zoomed crop
around each candidate it finds (`reportgen.model.candidates`), and MAE pretraining uses
its probability map as the lesion prior for studies without a mask
(`reportgen pretrain --train-detector` / `--detector`). There is no other detector.

The network is plain torch rather than MONAI's UNet: importing MONAI costs about 5 s,
which `reportgen generate` pays on every cold start, and three scales are all this
needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pretrain_mae.checkpoint import load_weights, read_config, write_checkpoint
from pretrain_mae.masking import drop_groups, drop_sequences
from reportgen.errors import InputError
from reportgen.model.augment import augment

DETECTOR_TYPE = "reportgen-lesion-detector"


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1),
        nn.InstanceNorm3d(cout, affine=True),
        nn.GELU(),
    )


class LesionDetector(nn.Module):
    """A three-scale 3D U-Net: sequences (B, S, X, Y, Z) -> lesion logits (B, X, Y, Z)."""

    def __init__(self, in_channels: int, width: int = 8):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(_conv(in_channels, w), _conv(w, w))
        self.enc2 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.enc3 = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w))
        self.up3 = nn.ConvTranspose3d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _conv(4 * w, 2 * w)
        self.up2 = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.dec1 = _conv(2 * w, w)
        self.head = nn.Conv3d(w, 1, 1)

    def forward(self, images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        x1 = self.enc1(images * present[:, :, None, None, None].to(images.dtype))
        x2 = self.enc2(x1)
        x3 = self.enc3(x2)
        y2 = self.dec2(torch.cat([self.up3(x3), x2], 1))
        y1 = self.dec1(torch.cat([self.up2(y2), x1], 1))
        return self.head(y1)[:, 0]


# A lesion of this many voxels weighs as much per voxel as before; a smaller one weighs
# sqrt(REFERENCE_VOXELS / its volume) times more (capped), so a 5 mm focus is not
# outvoted by the 30 mm mass beside it.
REFERENCE_VOXELS = 64.0
MAX_LESION_WEIGHT = 8.0


def lesion_size_weights(target: torch.Tensor) -> torch.Tensor:
    """Per-voxel loss weights (B, X, Y, Z): 1 outside lesions, inside each connected lesion
    sqrt(REFERENCE_VOXELS / its volume), at least 1 and at most MAX_LESION_WEIGHT."""
    from scipy import ndimage

    weights = np.ones(target.shape, np.float32)
    for b, mask in enumerate(target.detach().cpu().numpy() > 0.5):
        labels, n = ndimage.label(mask)
        if not n:
            continue
        sizes = np.bincount(labels.ravel())[1:].astype(np.float32)
        per_lesion = np.clip(np.sqrt(REFERENCE_VOXELS / sizes), 1.0, MAX_LESION_WEIGHT)
        weights[b][labels > 0] = per_lesion[labels[labels > 0] - 1]
    return torch.from_numpy(weights).to(target.device)


def detector_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice: lesions are a tiny fraction of the volume.

    Dice is per study (smoothed by 1), so on a lesion-free study it is lowest when
    nothing is marked: it suppresses false candidates. Dice pooled over the batch was
    tried and read worse on held-out phantoms (README, "Lesion-centred reading").
    `weight` (`lesion_size_weights`) lets small lesions count in the cross-entropy.
    """
    bce = F.binary_cross_entropy_with_logits(
        logits, target, weight=weight, pos_weight=torch.tensor(4.0)
    )
    prob = torch.sigmoid(logits)
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    dice = 1 - (2 * inter + 1) / (prob.sum(dims) + target.sum(dims) + 1)
    return bce + dice.mean()


def fit_detector(
    detector: LesionDetector,
    images: torch.Tensor,
    present: torch.Tensor,
    lesion: torch.Tensor,
    has_mask: list[bool],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool = True,
    augmented: bool = True,
    desc: str = "detector",
    window: tuple[int, int, int] | None = None,
    groups: list[list[int]] | None = None,
) -> float:
    """Train `detector` on the studies (or windows) with a lesion mask, sequences dropped
    at random so it works on incomplete studies too, augmented (`reportgen.model.augment`)
    unless told not to; returns the final loss. The one trainer for the detector and the
    segmenter (the same network on windows at input resolution). With `window`, each
    step trains on one random window of that size (the network is fully convolutional:
    smaller windows, more steps in the same time). `groups` of sequences (families) are
    also hidden together, at the same rate."""
    from tqdm.auto import tqdm

    labelled = [i for i, ok in enumerate(has_mask) if ok]
    if not labelled:
        raise InputError("--data", "training the lesion detector needs studies with a lesion mask")
    for p in detector.parameters():
        p.requires_grad = True
    detector.train()
    opt = torch.optim.AdamW(detector.parameters(), lr=lr, weight_decay=1e-4)
    losses = []
    for step in tqdm(range(steps), desc=desc, unit="step", disable=not progress):
        g = torch.Generator().manual_seed(seed * 7919 + step)
        pick = [labelled[int(i)] for i in torch.randint(len(labelled), (batch_size,), generator=g)]
        seen = drop_sequences(present[pick], 0.2, torch.rand(present[pick].shape, generator=g))
        if groups:
            seen = drop_groups(seen, groups, 0.2, torch.rand((len(pick), len(groups)), generator=g))
        x, target = images[pick].float(), lesion[pick].float()
        if window is not None:
            start = [
                int(torch.randint(max(1, n - w + 1), (), generator=g))
                for n, w in zip(x.shape[2:], window, strict=True)
            ]
            box = tuple(slice(a, a + w) for a, w in zip(start, window, strict=True))
            x, target = x[(..., *box)], target[(..., *box)]
        if augmented:
            x, target = augment(x, target, g)
        loss = detector_loss(detector(x, seen), target, lesion_size_weights(target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    detector.eval()
    for p in detector.parameters():
        p.requires_grad = False
    return float(np.mean(losses[-20:]))


def save_detector(detector: LesionDetector, folder: Path, info: dict) -> Path:
    """A standalone detector checkpoint; `info` records the grid and sequences it reads."""
    config = {"in_channels": detector.enc1[0][0].in_channels, "width": detector.head.in_channels}
    return write_checkpoint(folder, detector.state_dict(), {**config, **info}, DETECTOR_TYPE)


def load_detector(folder: Path) -> tuple[LesionDetector, dict]:
    """(detector in eval mode, its config) from a folder written by `save_detector`."""
    config = read_config(folder, DETECTOR_TYPE)
    detector = LesionDetector(int(config["in_channels"]), int(config["width"]))
    load_weights(detector, folder)
    return detector.eval(), config


@torch.no_grad()
def lesion_probability(
    detector: LesionDetector, images: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Probability map (B, X, Y, Z) on the grid of `images`."""
    return torch.sigmoid(detector(images.float(), present))
