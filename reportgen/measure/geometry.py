"""Size and position of one segmented lesion, in world millimetres.

The longest diameter is the largest distance between two points of the lesion (its 3D
Feret diameter), computed on the corners of its boundary voxels mapped through the
affine, so it is right for anisotropic voxels and oblique acquisitions alike; the axial
longest diameter is the same in the slice plane with the most extent (how a radiologist
measures on the axial image). Both include the voxels' own extent (corners, not
centres), so a lesion of one voxel measures that voxel's diagonal, not 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

CORNERS = np.array(list(product((-0.5, 0.5), repeat=3)))  # (8, 3) voxel corner offsets


@dataclass(frozen=True)
class LesionGeometry:
    centre_mm: tuple[float, float, float]  # centroid, world coordinates
    extent_mm: tuple[float, float, float]  # world-axis-aligned bounding box size
    longest_diameter_mm: float  # 3D Feret diameter (voxel corners: the outer bound)
    centre_diameter_mm: float  # ... over voxel centres (the inner bound)
    axial_longest_diameter_mm: float  # largest in-slice Feret diameter
    volume_ml: float


def _world(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return points @ affine[:3, :3].T + affine[:3, 3]


def _feret(points: np.ndarray) -> float:
    """Largest pairwise distance, over the convex hull's vertices when there are many."""
    points = np.unique(np.round(points, 6), axis=0)
    if len(points) < 2:
        return 0.0
    if len(points) > 64:
        with contextlib.suppress(QhullError):  # degenerate (a line): use every point
            points = points[ConvexHull(points).vertices]
    return float(pdist(points).max())


def voxel_centres_mm(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (X, Y, Z, 3) of every voxel centre of a grid."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    return _world(index.reshape(-1, 3).astype(np.float64), np.asarray(affine)).reshape(*shape, 3)


def _boundary_corners(mask: np.ndarray) -> np.ndarray:
    """Voxel-index coordinates of the corners of the mask's boundary voxels."""
    boundary = mask & ~ndimage.binary_erosion(mask)
    centres = np.argwhere(boundary).astype(np.float64)
    return (centres[:, None, :] + CORNERS[None]).reshape(-1, 3)


def _axial_feret(mask: np.ndarray, affine: np.ndarray) -> float:
    """Largest in-slice Feret diameter over the slices nearest the axial plane."""
    slice_axis = int(np.argmax(np.abs(affine[2, :3])))  # the voxel axis closest to S-I
    in_plane = [a for a in range(3) if a != slice_axis]
    basis = affine[:3, in_plane]  # the slice plane's two voxel directions, in mm
    q, _ = np.linalg.qr(basis)  # an orthonormal basis of that plane
    corners2d = np.array(list(product((-0.5, 0.5), repeat=2)))
    best = 0.0
    for k in np.unique(np.argwhere(mask)[:, slice_axis]):
        plane = np.take(mask, k, axis=slice_axis)
        edge = np.argwhere(plane & ~ndimage.binary_erosion(plane)).astype(np.float64)
        points = (edge[:, None, :] + corners2d[None]).reshape(-1, 2)
        best = max(best, _feret(points @ basis.T @ q))
    return best


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of a mask (empty if the mask is): what one lesion's size,
    box and outline are all taken from, so the three never describe different voxels."""
    parts, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    biggest = 1 + int(np.argmax(ndimage.sum(mask, parts, range(1, n + 1))))
    return parts == biggest


def ball(radius: float, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The voxels within `radius` of the centre one on a grid of `spacing` (both in the
    same unit: voxels by default, millimetres for an anisotropic grid)."""
    reach = [int(radius // step) for step in spacing]
    offsets = np.meshgrid(
        *[np.arange(-k, k + 1) * step for k, step in zip(reach, spacing, strict=True)],
        indexing="ij",
    )
    return sum(axis**2 for axis in offsets) <= radius**2


def lesion_body(
    mask: np.ndarray, radius: float = 3.0, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """The outlined lesion without its thin rays (outline leaks along a vessel or duct,
    partial volume with enhancing neighbours, spicules): the largest part left by opening
    with a ball of `radius` (in `spacing`'s unit), where that keeps at least half of it,
    else the outline as it is (a focus is thinner than the ball). A lesion's dimensions
    are measured on it, as a radiologist's callipers span the mass itself."""
    opened = largest_component(ndimage.binary_opening(mask, ball(radius, spacing)))
    return opened if opened.sum() >= 0.5 * mask.sum() else mask


def measure_lesion(mask: np.ndarray, affine: np.ndarray) -> LesionGeometry:
    """The geometry of the voxels where `mask` is true (one lesion) on a grid with `affine`."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or not mask.any():
        raise ValueError("measure_lesion needs a 3D mask with at least one voxel")
    affine = np.asarray(affine, dtype=np.float64)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    centre = _world(np.argwhere(mask).mean(0, keepdims=True), affine)[0]
    corners = _world(_boundary_corners(mask), affine)
    edge = mask & ~ndimage.binary_erosion(mask)
    centres = _world(np.argwhere(edge).astype(np.float64), affine)
    extent = corners.max(0) - corners.min(0)
    return LesionGeometry(
        centre_mm=tuple(round(float(v), 2) for v in centre),
        extent_mm=tuple(round(float(v), 2) for v in extent),
        longest_diameter_mm=round(_feret(corners), 2),
        centre_diameter_mm=round(_feret(centres), 2),
        axial_longest_diameter_mm=round(_axial_feret(mask, affine), 2),
        volume_ml=round(float(mask.sum()) * voxel_ml, 4),
    )


def midline_x_mm(t2: np.ndarray, affine: np.ndarray) -> float:
    """World x of the body's left-right centre of mass (T2W foreground), the pelvic
    readers' midline. (The breast's midline is its body's left-right extent halved,
    `measure.breast.find_landmarks`: two breasts of unequal size shift a centre of mass,
    not the extent; a pelvis is near symmetric and its extent often leaves the field.)"""
    body = t2 > 0.1 * np.percentile(t2, 99)
    index = np.argwhere(body)
    return float((index.mean(0) @ affine[:3, :3].T + affine[:3, 3])[0]) if len(index) else 0.0


def side_of(x_mm: float, midline_x_mm: float) -> str:
    """The patient's side a point lies on: RAS world x grows to the patient's right."""
    return "right" if x_mm > midline_x_mm else "left"


LATERAL_BEYOND_MM = 12.0  # tissue this far from the primary's centre lies outside the cervix
BOTH_SIDES_SHARE = 0.25  # each side holding this share of the lateral tissue: bilateral


def lateral_side(mask: np.ndarray, affine: np.ndarray, centre_x_mm: float) -> str | None:
    """Which side tissue spreads to from a central primary (right, left or bilateral):
    the mask's voxels lying more than LATERAL_BEYOND_MM either side of the primary's
    centre (a cervical tumour's parametrial extension, beyond its stroma), weighed by
    count; None where none lies that far. A radiologist states the side of parametrial
    invasion because it decides the radiotherapy field and the surgical plan."""
    index = np.argwhere(mask)
    if not len(index):
        return None
    offset = (index @ affine[:3, :3].T + affine[:3, 3])[:, 0] - centre_x_mm
    right = int((offset > LATERAL_BEYOND_MM).sum())  # RAS: x grows to the patient's right
    left = int((offset < -LATERAL_BEYOND_MM).sum())
    if right + left == 0:
        return None
    if min(right, left) >= BOTH_SIDES_SHARE * (right + left):
        return "bilateral"
    return "right" if right > left else "left"


NODE_MIN_DIAMETER_MM = 8.0  # smaller outlined parts are not read as metastatic nodes: 8 mm
# in short axis is the smallest size pelvic MRI calls a round node suspicious (ESUR
# guidelines for cervical cancer staging, Manganaro et al., Eur Radiol 2021;31:7802-16)
NEAR_ROUND_SHORT_AXIS = 0.95  # short axis / equivalent-sphere diameter of a near-round
# node (axes 1 : 0.9 : 0.95, as metastatic nodes tend to round up)


@dataclass(frozen=True)
class NodePart:
    """One outlined node: its centre (world mm) and short axis (mm), estimated from its
    volume (a 4 mm outline's own extent is too coarse to measure it directly)."""

    centre_mm: tuple[float, float, float]
    short_axis_mm: float


def node_parts(mask: np.ndarray, affine: np.ndarray) -> list[NodePart]:
    """The connected parts of a node outline at least NODE_MIN_DIAMETER_MM across."""
    parts, count = ndimage.label(mask)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3])))
    out = []
    for k in range(1, count + 1):
        index = np.argwhere(parts == k)
        diameter = (6.0 * len(index) * voxel_ml / np.pi) ** (1.0 / 3.0)
        if diameter < NODE_MIN_DIAMETER_MM:
            continue
        centre = index.mean(0) @ affine[:3, :3].T + affine[:3, 3]
        out.append(NodePart(tuple(float(c) for c in centre), NEAR_ROUND_SHORT_AXIS * diameter))
    return out


def sides_of(x_mm: list[float], midline_x_mm: float) -> str | None:
    """right, left or bilateral: the sides points lie on (None: no point)."""
    sides = {side_of(x, midline_x_mm) for x in x_mm}
    if not sides:
        return None
    return sides.pop() if len(sides) == 1 else "bilateral"
