"""Lesion proposals at the acquisition's own resolution: blobs of enhancement and of fluid.

The detector proposes on the model's 4 mm grid, where a 4 mm focus is one voxel: on the
dev clinical phantoms it proposed none of 5 foci and missed 6 of 44 larger lesions
(a 10 mm cyst, 7-15 mm masses, a 95 mm non-mass enhancement). Here candidates are
found on the DCE series' own grid (0.9 x 0.9 x 2 mm at clinical resolution), in two
contrast maps read against the breast's fat, so both are scale-free:

- enhancement: the mean of the post-contrast phases minus the pre-contrast phase, over
  fat's pre-contrast level (averaging the phases; a single early subtraction left foci
  behind ~30 noise peaks per study, the mean ranked them first);
- fluid: T2W over fat's T2W level minus pre-contrast T1 over fat's T1 level (fluid is
  bright on one and dark on the other; fat is bright on both): a cyst stands at about
  0.8, fibroglandular tissue at 0.1, fat at 0.

Each map's scale-normalised Laplacian of Gaussian (sigma^2 LoG over PROPOSAL_SIGMAS_MM,
from a focus to a large mass) is searched for local maxima inside the breast, strongest
first. A proposal is only a place to look: the crop reader's gate decides whether a
lesion is there (`reportgen.model.crop_reader`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from reportgen.io.study import Study, Volume

PROPOSAL_SIGMAS_MM = (1.2, 2.0, 3.2, 5.0, 8.0)
PEAK_WINDOW_MM = 4.5  # a local maximum beats every voxel within this half-width
SEPARATION_MM = 6.0  # weaker peaks of one map closer than this to a kept one are the same blob
FAT_PERCENTILE = 90.0  # fat is the brightest breast tissue on T1 and on T2W
POST_CONTRAST = ("DCE_1", "DCE_2", "DCE_3")

Inside = Callable[[np.ndarray], np.ndarray]  # world points (N, 3) -> in the breast (N,)


@dataclass(frozen=True)
class Proposal:
    """A place a lesion may be: a blob's centre (world mm), its scale and strength."""

    centre_mm: tuple[float, float, float]
    scale_mm: float
    strength: float
    contrast: str  # "enhancement" | "fluid"


def world_points(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of every voxel of a grid, (prod(shape), 3)."""
    index = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    return index @ np.asarray(affine, np.float32)[:3, :3].T + np.asarray(affine, np.float32)[:3, 3]


def resampled_onto(
    volume: Volume, shape: tuple[int, ...], affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`volume` linearly interpolated at the voxels of another grid (zero outside it),
    and where that grid lies within the volume's field of view."""
    inverse = np.linalg.inv(np.asarray(volume.affine, np.float64))
    index = world_points(shape, affine) @ inverse[:3, :3].T.astype(np.float32)
    index += inverse[:3, 3].astype(np.float32)
    values = ndimage.map_coordinates(
        np.asarray(volume.data, np.float32), index.T, order=1, mode="constant", cval=0.0
    )
    limit = np.asarray(volume.data.shape[:3], np.float32) - 1
    covered = ((index >= 0) & (index <= limit)).all(1)
    return values.reshape(shape), covered.reshape(shape)


def laplacian_of_gaussian(image: np.ndarray, sigma_mm: float, spacing: np.ndarray) -> np.ndarray:
    """sigma^2 times the Laplacian of `image` smoothed by a Gaussian of `sigma_mm`: one
    smoothing, then second differences (a third of scipy's gaussian_laplace's passes)."""
    smooth = ndimage.gaussian_filter(image, sigma_mm / spacing)
    out = np.zeros_like(smooth)
    for axis, step in enumerate(spacing):
        out += ndimage.correlate1d(smooth, [1.0, -2.0, 1.0], axis=axis) / np.float32(step**2)
    return np.float32(sigma_mm**2) * out


def contrast_maps(
    study: Study, inside: Inside
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The enhancement and fluid maps (where their series were acquired) over the
    breast's bounding box (with room for the widest blob filter) on the pre-contrast
    series' grid (else T2W's): (maps, the box's affine, the breast within the box).
    The maps are not masked: a mask's edge would itself look like a blob."""
    seq = study.sequences
    anchor = seq["DCE_0"] if "DCE_0" in seq else seq.get("T2W")
    if anchor is None:
        return {}, np.eye(4), np.zeros((0, 0, 0), bool)
    shape, affine = anchor.data.shape[:3], np.asarray(anchor.affine, np.float64)
    breast = inside(world_points(shape, affine)).reshape(shape)
    if breast.sum() < 100:
        return {}, affine, np.zeros((0, 0, 0), bool)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    reach = np.ceil(3 * max(PROPOSAL_SIGMAS_MM) / spacing).astype(int)
    where = np.argwhere(breast)
    low = np.maximum(where.min(0) - reach, 0)
    high = np.minimum(where.max(0) + reach + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    box_affine = affine.copy()
    box_affine[:3, 3] = affine[:3, :3] @ low + affine[:3, 3]
    breast = breast[box]

    def over_fat(image: np.ndarray) -> np.ndarray:
        return image / max(float(np.percentile(image[breast], FAT_PERCENTILE)), 1e-6)

    maps: dict[str, np.ndarray] = {}
    pre = over_fat(np.asarray(seq["DCE_0"].data, np.float32)[box]) if "DCE_0" in seq else None
    posts = [n for n in POST_CONTRAST if n in seq]
    if pre is not None and posts:
        fat = max(
            float(np.percentile(np.asarray(seq["DCE_0"].data)[box][breast], FAT_PERCENTILE)), 1e-6
        )
        post = np.mean([np.asarray(seq[n].data, np.float32)[box] for n in posts], axis=0)
        maps["enhancement"] = post / fat - pre
    if "T2W" in seq:
        t2, covered = resampled_onto(seq["T2W"], breast.shape, box_affine)
        # where T2W's field of view ends (thicker slices, another extent) its edge would
        # be a blob: only where it was acquired, a fine blob's reach inside
        breast &= ndimage.binary_erosion(covered, iterations=2, border_value=1)
        t2 = over_fat(t2)
        maps["fluid"] = t2 - pre if pre is not None else t2 - 1.0
    return maps, box_affine, breast


def blob_peaks(
    image: np.ndarray,
    affine: np.ndarray,
    region: np.ndarray,
    sigmas_mm: tuple[float, ...] = PROPOSAL_SIGMAS_MM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright blobs of `image`: (world centres (N, 3), strengths, scales in mm), strongest
    first, from local maxima over space and scale of the scale-normalised LoG, each
    scale's response in units of its own spread over `region` (robust: median absolute
    deviation), so the finest scale's noise does not outrank a cyst at a coarser one."""
    spacing = np.sqrt((np.asarray(affine, np.float64)[:3, :3] ** 2).sum(0))
    image = np.asarray(image, np.float32)
    best = np.full(image.shape, -np.inf, np.float32)
    scale = np.zeros(image.shape, np.float32)
    for sigma in sigmas_mm:
        response = -laplacian_of_gaussian(image, sigma, spacing)
        within = response[region]
        spread = 1.4826 * float(np.median(np.abs(within - np.median(within))))
        response /= max(spread, 1e-6)
        better = response > best
        best[better], scale[better] = response[better], sigma
    window = np.maximum(3, 2 * np.round(PEAK_WINDOW_MM / spacing) + 1).astype(int)
    peak = (best == ndimage.maximum_filter(best, size=tuple(window))) & region
    index = np.argwhere(peak)
    strength, sigma = best[peak], scale[peak]
    order = np.argsort(-strength, kind="stable")
    world = index[order] @ affine[:3, :3].T + affine[:3, 3]
    return world, strength[order], sigma[order]


def separated(world: np.ndarray, scale: np.ndarray, limit: int) -> list[int]:
    """Indices of the strongest peaks (already in order), each at least SEPARATION_MM
    (or its own scale) from every one kept before it, up to `limit`."""
    kept: list[int] = []
    for i, point in enumerate(world):
        reach = max(SEPARATION_MM, float(scale[i]))
        if all(np.linalg.norm(point - world[j]) >= reach for j in kept):
            kept.append(i)
            if len(kept) == limit:
                break
    return kept


def propose(study: Study, inside: Inside, limits: dict[str, int]) -> list[Proposal]:
    """Up to `limits[map]` proposals inside the breast from each contrast map, strongest
    first per map."""
    maps, affine, breast = contrast_maps(study, inside)
    found: list[Proposal] = []
    for name, image in maps.items():
        world, strength, scale = blob_peaks(image, affine, breast)
        for i in separated(world, scale, limits.get(name, 0)):
            centre = tuple(round(float(v), 3) for v in world[i])
            found.append(Proposal(centre, float(scale[i]), float(strength[i]), name))
    return found


def inside_mask(mask: np.ndarray, affine: np.ndarray, dilate_voxels: int = 2) -> Inside:
    """`Inside` for a boolean mask on a grid (the breast on the model's grid), grown by
    `dilate_voxels` so a lesion at the breast's edge is still inside."""
    grown = ndimage.binary_dilation(mask, iterations=dilate_voxels) if dilate_voxels else mask
    inverse = np.linalg.inv(np.asarray(affine, np.float64))
    shape = np.asarray(grown.shape)

    def inside(points: np.ndarray) -> np.ndarray:
        index = np.rint(points @ inverse[:3, :3].T + inverse[:3, 3]).astype(np.int64)
        ok = ((index >= 0) & (index < shape)).all(1)
        out = np.zeros(len(points), bool)
        out[ok] = grown[tuple(index[ok].T)]
        return out

    return inside
