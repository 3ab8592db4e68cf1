"""Training-time augmentation, the product's one module of it, batched in torch: the
detector and segmenter and the staging outline (`augment`), the staging readers'
acquisition-varied copies (`varied_copy`), the outline without acquisition augmentation
(`flip_and_gain`), and the body-region reader (`body_region_look`).

What the detector must not depend on, it is shown varied: orientation (flips on every
axis: a lesion is a lesion in either breast, so the mask flips with the image and no
label changes), per-sequence gain and contrast, a smooth receive-coil bias field, noise,
and thick slices (a random axis averaged in pairs and stretched back: anisotropic
acquisitions). Batched tensor operations, not per-study transforms: on two CPU cores
this keeps augmentation a small share of a training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(
    images: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator,
    flip_axes: tuple[int, ...] = (0, 1, 2),
) -> tuple[torch.Tensor, torch.Tensor]:
    """A randomly varied copy of `images` (B, S, X, Y, Z) and its mask `target` (B, X, Y, Z).

    `flip_axes`: the axes along which a flipped study is still a plausible one (all three
    for a breast lesion; only left-right where anatomy has an up and a front).
    """
    b, s = images.shape[:2]
    images, target = images.clone(), target.clone()
    flips = torch.rand((b, 3), generator=generator) < 0.5
    for i in range(b):
        axes = [a for a in flip_axes if flips[i, a]]
        if axes:
            images[i] = images[i].flip([a + 1 for a in axes])
            target[i] = target[i].flip(axes)
    gain = torch.exp(0.15 * torch.randn((b, s, 1, 1, 1), generator=generator))
    gamma = torch.exp(0.1 * torch.randn((b, s, 1, 1, 1), generator=generator))
    images = images.clamp(min=0).pow(gamma) * gain
    coarse = 0.1 * torch.randn((b, 1, 3, 3, 3), generator=generator)
    bias = F.interpolate(coarse, size=images.shape[2:], mode="trilinear", align_corners=True)
    images = images * torch.exp(bias)
    sigma = 0.03 * torch.rand((b, 1, 1, 1, 1), generator=generator)
    images = images + sigma * torch.randn(images.shape, generator=generator)
    if float(torch.rand((), generator=generator)) < 0.3:
        axis = int(torch.randint(3, (), generator=generator))
        kernel = [1, 1, 1]
        kernel[axis] = 2
        if images.shape[2 + axis] % 2 == 0:
            thick = F.avg_pool3d(images.flatten(0, 1)[:, None], kernel)
            images = F.interpolate(thick, size=images.shape[2:], mode="nearest")[:, 0]
            images = images.unflatten(0, (b, s))
    return images, target


def body_region_look(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Another scanner's look at the same body, for the body-region reader (which sees the
    body's outline at 8 mm, not lesions): gamma, gain, noise, shift, mirror."""
    n = x.shape[0]
    gamma = torch.exp(torch.empty(n, 1, 1, 1, 1).uniform_(-0.4, 0.4, generator=generator))
    gain = torch.empty(n, 1, 1, 1, 1).uniform_(0.7, 1.3, generator=generator)
    x = x.clamp_min(0) ** gamma * gain
    x = x + 0.05 * torch.randn(x.shape, generator=generator) * (x > 0)
    shifts = torch.randint(-3, 4, (3,), generator=generator).tolist()
    x = torch.roll(x, shifts=shifts, dims=(2, 3, 4))
    if bool(torch.rand(1, generator=generator) < 0.5):
        x = x.flip(2)
    return x


def varied_copy(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`images` (B, S, X, Y, Z) as another acquisition might give them: gain, contrast,
    bias, noise and slice thickness varied as in outline training (`augment`), never
    flipped, so the truth masks and every position still apply."""
    unused = torch.zeros((images.shape[0], *images.shape[2:]), dtype=torch.long)
    return augment(images, unused, generator, flip_axes=())[0]


def flip_and_gain(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The staging outline's variation without acquisition augmentation (`--no-augment`):
    a left-right flip of image and labels, and a per-sequence gain."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x[flip] = x[flip].flip(2)
    y[flip] = y[flip].flip(1)
    x = x * (1 + 0.1 * torch.randn(len(x), x.shape[1], 1, 1, 1, generator=generator))
    return x, y
