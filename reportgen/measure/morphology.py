"""A lesion's form and internal enhancement: what shape, margin and pattern words describe.

BI-RADS describes a mass by its shape (oval, round, irregular), its margin
(circumscribed, irregular, spiculated) and its internal enhancement (homogeneous,
heterogeneous, rim, dark septations); these are read here from the outline and the
images, as numbers a classifier (`reportgen.model.readout`) learns the words for:

- form, from the outline alone: the principal axes' ratios (round ~1, oval < 1), the
  solidity (volume over convex hull volume: an irregular shape is not convex) and the
  sphericity (a ball's surface over the outline's, for the same volume: lobulated and
  irregular outlines have more surface);
- spicules, from DCE: how much of a thin shell just outside the outline enhances like
  the lesion (spicules are enhancing strands leaving the mass, which an outline of the
  mass leaves out);
- internal enhancement, from DCE: its spread over the lesion (coefficient of variation of
  the early enhancement), the outer rim's over the core's, and the share of voxels that
  barely enhance (septations, necrosis).

All are ratios or fractions, so they survive the scanner's gain; each DCE measure is None
without DCE (never guessed from another sequence).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

SHELL_VOXELS = (1, 3)  # the spicule shell: from this many voxels outside the outline to this
WEAK_ENHANCEMENT = 0.5  # a voxel enhancing under this share of the lesion's median is "weak"


@dataclass(frozen=True)
class LesionForm:
    elongation: float  # second principal axis over the first (1: round)
    flatness: float  # third over the first
    solidity: float  # volume over convex hull volume
    sphericity: float  # surface of a ball of the same volume over the outline's surface


@dataclass(frozen=True)
class LesionPattern:
    peri_enhancing: float  # share of the shell outside the outline enhancing like the lesion
    enhancement_cv: float  # early enhancement: standard deviation over mean, inside
    rim_over_core: float  # mean early enhancement of the outer voxel layer over the rest
    weak_fraction: float  # share of inside voxels enhancing under WEAK_ENHANCEMENT x median


def lesion_form(mask: np.ndarray) -> LesionForm:
    """Form of the outline `mask` on an isotropic grid (ratios: the spacing cancels)."""
    mask = np.asarray(mask, dtype=bool)
    points = np.argwhere(mask).astype(np.float64)
    if len(points) < 4:
        return LesionForm(1.0, 1.0, 1.0, 1.0)
    spread = np.sqrt(np.maximum(np.linalg.eigvalsh(np.cov(points.T))[::-1], 1e-9))
    solidity = 1.0
    boundary = np.argwhere(mask & ~ndimage.binary_erosion(mask)).astype(np.float64)
    with contextlib.suppress(QhullError):
        hull = ConvexHull(np.unique(_all_corners(boundary), axis=0))
        solidity = float(len(points) / max(hull.volume, len(points)))
    faces = sum(
        int(np.count_nonzero(np.diff(np.pad(mask, 1).astype(np.int8), axis=a))) for a in range(3)
    )
    volume = float(len(points))
    sphericity = float(np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / max(faces, 1))
    return LesionForm(
        elongation=round(float(spread[1] / spread[0]), 4),
        flatness=round(float(spread[2] / spread[0]), 4),
        solidity=round(solidity, 4),
        sphericity=round(sphericity, 4),
    )


def _all_corners(points: np.ndarray) -> np.ndarray:
    offsets = np.array(np.meshgrid(*([(-0.5, 0.5)] * 3), indexing="ij")).reshape(3, -1).T
    return (points[:, None, :] + offsets[None]).reshape(-1, 3)


def lesion_pattern(mask: np.ndarray, phases: list[np.ndarray]) -> LesionPattern | None:
    """Enhancement pattern of the lesion under `mask` over the DCE `phases` (pre-contrast
    first); None without at least one post-contrast phase."""
    mask = np.asarray(mask, dtype=bool)
    if len(phases) < 2 or not mask.any():
        return None
    before = np.maximum(phases[0], 1e-3)
    early = phases[1] / before - 1.0
    inside = early[mask]
    median = float(np.median(inside))
    mean = float(inside.mean())
    outer_layer = mask & ~ndimage.binary_erosion(mask)
    core = mask & ~outer_layer
    near, far = SHELL_VOXELS
    shell = ndimage.binary_dilation(mask, iterations=far) & ~ndimage.binary_dilation(
        mask, iterations=near
    )
    threshold = WEAK_ENHANCEMENT * max(median, 1e-3)
    peri = float((early[shell] >= threshold).mean()) if shell.any() else 0.0
    rim = float(early[outer_layer].mean()) if outer_layer.any() else mean
    core_mean = float(early[core].mean()) if core.any() else rim
    return LesionPattern(
        peri_enhancing=round(peri, 4),
        enhancement_cv=round(float(inside.std() / max(abs(mean), 1e-3)), 4),
        rim_over_core=round(rim / max(core_mean, 1e-3), 4),
        weak_fraction=round(float((inside < threshold).mean()), 4),
    )
