"""Training the lesion detector (`reportgen.model.detector`): its loss, with small
lesions weighted up, and the one trainer for the detector and the segmenter (the same
network on windows at input resolution). Drafting never imports this module."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pretrain_mae.masking import drop_groups, drop_sequences
from reportgen.errors import InputError
from reportgen.model.augment import augment
from reportgen.model.detector import LesionDetector
from reportgen.model.engine import Optimiser, adamw

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
    tried and read worse on held-out phantoms (docs/report_model.md, "Lesion-centred reading").
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
    opt = Optimiser(adamw(detector.parameters(), lr, weight_decay=1e-4))
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
        opt.step(loss)
        losses.append(loss.item())
    detector.eval()
    for p in detector.parameters():
        p.requires_grad = False
    return float(np.mean(losses[-20:]))
