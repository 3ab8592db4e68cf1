"""A lesion's outline as its radius in each direction from its centre, at native resolution.

A radiologist reads shape and margin by following the lesion's edge outward from its
centre: where the enhancing (or, without contrast, the T2-bright or -dark) tissue ends,
how evenly (round, oval, lobulated), how sharply (a circumscribed edge falls within a
voxel or two, an irregular one frays), and whether strands leave it (spicules). Here
rays are cast from the centre of a lesion's crop in `DIRECTIONS` (near-uniform on the
sphere); along each the edge is where the contrast falls below half the lesion's own
level and stays there for a millimetre and more (so a necrotic core or a dark septum does
not stop the ray). No threshold is absolute: the level is the lesion's, so a scanner's
gain cancels, and the outline needs no trained segmenter, only a centre.

`RadialOutline.mask` turns the radii into a star-shaped mask on the crop's grid (for the
form, pattern and signal measures), and `radial_form` summarises the radii as ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

N_DIRECTIONS = 300
STEP_VOXELS = 0.5  # sampling step along each ray
STAY_BELOW_VOXELS = 2.0  # the edge: contrast below half the level for this far
ENTRY_VOXELS = 5.0  # a ray must reach lesion-level contrast within this of the centre
# the lesion's level: the highest of its contrast's upper quartiles within these distances
# of the centre (a focus fills only the smallest; a necrotic core needs the largest)
CORE_RADII_VOXELS = (1.5, 2.5, 4.0, 6.0)
PROFILE_STEPS = 8  # samples either side of the edge in the edge profile


def fibonacci_sphere(n: int) -> np.ndarray:
    """`n` near-uniform unit vectors (n, 3)."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azimuth = np.pi * (1.0 + 5**0.5) * i
    return np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], 1
    )


DIRECTIONS = fibonacci_sphere(N_DIRECTIONS)
_LOOKUP = cKDTree(DIRECTIONS)
NEIGHBOURS = _LOOKUP.query(DIRECTIONS, 7)[1][:, 1:]  # each direction's six nearest others


def _basis(directions: np.ndarray, degree: int) -> np.ndarray:
    """Monomials of the direction's coordinates up to `degree` (spans the real spherical
    harmonics of that degree): a smooth radius function is a short sum of them."""
    x, y, z = directions.T
    terms = [np.ones_like(x)]
    for d in range(1, degree + 1):
        for i in range(d + 1):
            for j in range(d + 1 - i):
                terms.append(x**i * y**j * z ** (d - i - j))
    return np.stack(terms, 1)


BASIS_SMOOTH, BASIS_LOBES = _basis(DIRECTIONS, 2), _basis(DIRECTIONS, 3)


@dataclass(frozen=True)
class RadialOutline:
    """Radius (voxels) per direction of `DIRECTIONS`, from `centre` (voxel coordinates)."""

    radii: np.ndarray
    centre: np.ndarray
    level: float  # the lesion's contrast near its centre
    profile: np.ndarray  # median contrast across the edge, over `level` (2 * PROFILE_STEPS + 1)
    reached_border: float  # share of rays that never entered, or ran out of the crop

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """The star-shaped region inside the radii on a grid of `shape`."""
        points = np.argwhere(np.ones(shape, bool)) - self.centre
        distance = np.linalg.norm(points, axis=1)
        nearest = _LOOKUP.query(points / np.maximum(distance, 1e-6)[:, None])[1]
        return (distance <= self.radii[nearest]).reshape(shape)


def core_level(contrast: np.ndarray, centre: np.ndarray | None = None) -> float:
    """The lesion's contrast at the centre: the highest upper quartile within
    `CORE_RADII_VOXELS` (a focus fills only the smallest sphere, a necrotic or septated
    centre needs the largest)."""
    shape = np.asarray(contrast.shape)
    centre = (shape - 1) / 2.0 if centre is None else np.asarray(centre, float)
    distance = np.linalg.norm(np.argwhere(np.ones(contrast.shape, bool)) - centre, axis=1)
    flat = contrast.reshape(-1)
    return max(float(np.percentile(flat[distance <= r], 75)) for r in CORE_RADII_VOXELS)


def radial_outline(contrast: np.ndarray, centre: np.ndarray | None = None) -> RadialOutline:
    """Cast `DIRECTIONS` from `centre` (default: the crop's centre) through `contrast` (a
    lesion-positive image on an isotropic grid: relative enhancement, or T2 contrast)."""
    shape = np.asarray(contrast.shape)
    centre = (shape - 1) / 2.0 if centre is None else np.asarray(centre, float)
    steps = np.arange(0.0, float(min(shape) / 2.0 - 1.0), STEP_VOXELS)
    points = centre[None, None, :] + DIRECTIONS[:, None, :] * steps[None, :, None]
    samples = ndimage.map_coordinates(
        contrast, points.reshape(-1, 3).T, order=1, mode="nearest"
    ).reshape(len(DIRECTIONS), len(steps))
    level = max(core_level(contrast, centre), 1e-3)
    below = samples < 0.5 * level
    run = round(STAY_BELOW_VOXELS / STEP_VOXELS)
    stays = below.copy()
    for k in range(1, run):
        stays[:, :-k] &= below[:, k:]
    # a ray starting in a dark septum or a necrotic centre enters the lesion first; one
    # that never does within ENTRY_VOXELS (along a septum) takes its neighbours' radius
    entered = ~below
    entry = np.where(entered.any(1), entered.argmax(1), len(steps))
    inside = entry <= round(ENTRY_VOXELS / STEP_VOXELS)
    stays &= np.arange(len(steps))[None, :] >= entry[:, None]
    found = stays.any(1) & inside
    first = np.where(stays.any(1), stays.argmax(1), len(steps) - 1)
    radii = np.maximum(steps[first], STEP_VOXELS)
    if inside.any() and not inside.all():
        for _ in range(3):  # fill from the neighbouring directions that entered
            known = np.where(inside[NEIGHBOURS], radii[NEIGHBOURS], np.nan)
            fill = ~inside & np.isfinite(known).any(1)
            radii[fill] = np.nanmedian(known[fill], axis=1)
            inside = inside | fill
        radii[~inside] = np.median(radii[inside])
    offsets = np.arange(-PROFILE_STEPS, PROFILE_STEPS + 1)
    at = np.clip(first[:, None] + offsets[None, :], 0, len(steps) - 1)
    profile = np.median(samples[np.arange(len(DIRECTIONS))[:, None], at], 0) / level
    return RadialOutline(radii, centre, level, profile, float(1.0 - found.mean()))


@dataclass(frozen=True)
class RadialForm:
    """The outline's radii as ratios (scale-free): what shape and margin words describe."""

    spread: float  # standard deviation of the radius over its median
    longest: float  # longest radius over the median (a spicule, a lobe)
    upper_tail: float  # 90th percentile over the median
    lower_tail: float  # 10th percentile over the median
    beyond_130: float  # share of directions reaching past 1.3 x the median (strands)
    beyond_160: float
    jagged: float  # mean radius difference to neighbouring directions, over the median
    jagged_tail: float  # its 90th percentile
    smooth_residual: float  # what a degree-2 radius function leaves, over the median
    lobe_residual: float  # ... degree 3: lobulation is captured, roughness is not
    elongation: float  # second principal axis of the outlined volume over the first
    flatness: float  # third over the first
    edge_width: float  # contrast drop over the edge's central samples (sharp: large)


def radial_form(outline: RadialOutline) -> RadialForm:
    r = outline.radii
    median = max(float(np.median(r)), 1e-3)
    step = np.abs(r[:, None] - r[NEIGHBOURS]).mean(1)

    def residual(basis: np.ndarray) -> float:
        coef, *_ = np.linalg.lstsq(basis, r, rcond=None)
        return float((r - basis @ coef).std() / median)

    # the star-shaped solid's second moments: the integral of x x^T over the volume is,
    # direction by direction, r^5 / 5 d d^T (so the axes are the volume's, not the edge's)
    inertia = np.einsum("n,ni,nj->ij", r**5, DIRECTIONS, DIRECTIONS)
    axes = np.sqrt(np.maximum(np.linalg.eigvalsh(inertia)[::-1], 1e-9))
    mid = PROFILE_STEPS
    return RadialForm(
        spread=float(r.std() / median),
        longest=float(r.max() / median),
        upper_tail=float(np.percentile(r, 90) / median),
        lower_tail=float(np.percentile(r, 10) / median),
        beyond_130=float((r > 1.3 * median).mean()),
        beyond_160=float((r > 1.6 * median).mean()),
        jagged=float(step.mean() / median),
        jagged_tail=float(np.percentile(step, 90) / median),
        smooth_residual=residual(BASIS_SMOOTH),
        lobe_residual=residual(BASIS_LOBES),
        elongation=float(axes[1] / axes[0]),
        flatness=float(axes[2] / axes[0]),
        edge_width=float(outline.profile[mid - 2] - outline.profile[mid + 2]),
    )
