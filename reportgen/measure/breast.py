"""Where a breast lesion lies, from the breast's own landmarks found in the image.

Radiologists place a breast lesion by side (of the body's midline), clock face (around
the nipple, as seen facing the patient: 12 superior, 3 towards the patient's left in
either breast) and distance from the nipple. All three are geometry once the lesion is
segmented, so they are measured here in world (RAS+) millimetres:

- the body is what is brighter than air on a sequence where fat is bright (T2W);
- the midline is the middle of the body's left-right extent;
- each nipple lies at the most anterior point of the body on its side of the midline,
  centred on the front of that breast.

- the chest wall behind each nipple is where the tissue column under the nipple turns
  from breast (fat, fibroglandular tissue: mid to bright on T2W) to muscle and lung
  (dark) and stays dark: depth is the lesion's place between chest wall and nipple.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from reportgen.measure.geometry import side_of

# The nipple's left-right and up-down position is the centre of the breast's front: the
# body points within this distance of its most anterior point (wide enough that a
# retracted nipple's notch does not pull it sideways).
NIPPLE_BAND_MM = 12.0
# The chest wall: walking back from the nipple along a column this wide (mm), the first
# place where the column's mean T2W signal stays below CHEST_WALL_LEVEL of the breast's
# bright (fat) level for at least CHEST_WALL_RUN_MM, counted only once the walk has
# passed breast fat (BREAST_FAT_LEVEL of the bright level): skin, nipple and dense tissue
# at the front are mid-grey, and 8 mm of them read as the wall put 7 of 48 lesions of the
# clinical dev phantoms (seed 2323) at depth 0.
CHEST_WALL_BAND_MM = 20.0
CHEST_WALL_LEVEL = 0.4
CHEST_WALL_RUN_MM = 8.0
BREAST_FAT_LEVEL = 0.5


# The lexicon's depth: the third of the line from the chest wall behind the nipple to the
# nipple that a lesion lies in (BI-RADS MRI lexicon, 5th ed.: anterior, middle or
# posterior third), in the order of `BreastPosition.depth_fraction`.
DEPTH_THIRDS = ("depth_posterior", "depth_middle", "depth_anterior")


def depth_third(fraction: float) -> str:
    """The lexicon's depth term of a depth fraction (0 at the chest wall, 1 at the nipple)."""
    return DEPTH_THIRDS[min(max(int(fraction * 3), 0), 2)]


@dataclass(frozen=True)
class BreastLandmarks:
    midline_x_mm: float
    nipples_mm: dict[str, tuple[float, float, float]]  # "right" / "left" -> (x, y, z)
    chest_wall_y_mm: dict[str, float]  # "right" / "left" -> anterior-posterior position


@dataclass(frozen=True)
class BreastPosition:
    laterality: str  # "right" | "left"
    clock_hour: int  # 1..12
    nipple_distance_mm: float
    depth_fraction: float  # 0 at the chest wall, 1 at the nipple (along anterior-posterior)


def _world(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return points @ affine[:3, :3].T + affine[:3, 3]


def body_mask(image: np.ndarray) -> np.ndarray:
    """The largest connected region brighter than a fifth of the image's bright level."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        raise ValueError("the image has no finite voxels")
    inside = image > 0.2 * float(np.percentile(finite, 99))
    labels, n = ndimage.label(inside)
    if n == 0:
        raise ValueError("no body found in the image (nothing brighter than air)")
    sizes = ndimage.sum_labels(inside, labels, np.arange(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def fat_level(image: np.ndarray, body: np.ndarray | None = None) -> float:
    """Fat's signal level: the 95th percentile of the body (fat is the brightest tissue of
    a breast study on T2W and on a T1 without fat suppression)."""
    inside = body_mask(image) if body is None else body
    return float(np.percentile(image[inside], 95))


def find_landmarks(
    image: np.ndarray, affine: np.ndarray, body: np.ndarray | None = None
) -> BreastLandmarks:
    """Midline, nipples and chest wall of a breast study from one volume where fat is
    bright (T2W)."""
    affine = np.asarray(affine, dtype=np.float64)
    inside = body_mask(image) if body is None else body
    body = _world(np.argwhere(inside).astype(np.float64), affine)
    values = image[inside].astype(np.float64)
    midline = float((body[:, 0].min() + body[:, 0].max()) / 2)
    nipples, chest = {}, {}
    for side, on_side in (("right", body[:, 0] > midline), ("left", body[:, 0] < midline)):
        points = body[on_side]
        if len(points) == 0:
            continue
        tip = points[:, 1].max()
        front = points[points[:, 1] >= tip - NIPPLE_BAND_MM]
        x, _, z = front.mean(0)
        nipples[side] = (round(float(x), 2), round(float(tip), 2), round(float(z), 2))
        chest[side] = round(_chest_wall_y(points, values[on_side], (x, tip, z)), 2)
    return BreastLandmarks(round(midline, 2), nipples, chest)


def _chest_wall_y(points: np.ndarray, values: np.ndarray, nipple: tuple) -> float:
    """Anterior-posterior position of the chest wall behind a nipple (see module doc)."""
    nx, ny, nz = nipple
    half = CHEST_WALL_BAND_MM / 2
    column = (np.abs(points[:, 0] - nx) <= half) & (np.abs(points[:, 2] - nz) <= half)
    ys, vs = points[column, 1], values[column]
    bright = float(np.percentile(vs, 90)) if vs.size else 0.0
    step = 2.0
    edges = np.arange(ny, ys.min() - step, -step) if vs.size else np.array([ny])
    bins = [(ys <= top) & (ys > top - step) for top in edges]
    levels = [float(np.median(vs[b])) if b.any() else 0.0 for b in bins]
    fat = [k for k, m in enumerate(levels) if m >= BREAST_FAT_LEVEL * bright]
    start = fat[0] if fat else 0  # no fat in the column at all: walk from the tip
    run = 0.0
    for top, level in zip(edges[start:], levels[start:], strict=True):
        dark = level < CHEST_WALL_LEVEL * bright
        run = run + step if dark else 0.0
        if run >= CHEST_WALL_RUN_MM:
            return float(top + run - step)
    return float(ys.min()) if vs.size else float(ny)


def clock_hour(offset_x_mm: float, offset_z_mm: float) -> int:
    """Clock face of an offset from the nipple in the coronal plane, facing the patient:
    12 is superior (+z), 3 towards the patient's left (-x in RAS)."""
    degrees = np.degrees(np.arctan2(-offset_x_mm, offset_z_mm)) % 360.0
    hour = int(np.round(degrees / 30.0)) % 12
    return 12 if hour == 0 else hour


def breast_position(
    centre_mm: tuple[float, float, float], marks: BreastLandmarks
) -> BreastPosition:
    """Side, clock face, nipple distance and depth of a lesion centred at `centre_mm`."""
    x, y, z = centre_mm
    side = side_of(x, marks.midline_x_mm)
    if side not in marks.nipples_mm:
        raise ValueError(f"no {side} nipple was found in the image")
    nx, ny, nz = marks.nipples_mm[side]
    distance = float(np.linalg.norm(np.subtract(centre_mm, (nx, ny, nz))))
    wall = marks.chest_wall_y_mm[side]
    depth = float(np.clip((y - wall) / max(ny - wall, 1.0), 0.0, 1.0))
    return BreastPosition(side, clock_hour(x - nx, z - nz), round(distance, 1), round(depth, 3))
