"""Training the lesion detector (`reportgen.model.detector`; its loss is
`reportgen.model.losses`', small lesions weighted up): the one trainer for the detector
and the segmenter (the same network on windows at input resolution). Drafting never
imports this module."""

from __future__ import annotations

import numpy as np
import torch

from pretrain_mae.masking import drop_groups, drop_sequences
from reportgen.errors import InputError
from reportgen.model.augment import augment
from reportgen.model.detector import LesionDetector
from reportgen.model.engine import Optimiser, adamw
from reportgen.model.losses import DETECTOR_WEIGHTING, part_size_weights, segmentation_loss


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
        weights = part_size_weights((target > 0.5).long(), 2, DETECTOR_WEIGHTING)
        loss = segmentation_loss(detector(x, seen), target, weights)
        opt.step(loss)
        losses.append(loss.item())
    detector.eval()
    for p in detector.parameters():
        p.requires_grad = False
    return float(np.mean(losses[-20:]))
