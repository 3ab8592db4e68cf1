"""Where a breast lesion lies, from the breast's own landmarks found in the image.

Radiologists place a breast lesion by side (of the body's midline), clock face (around
the nipple, as seen facing the patient: 12 superior, 3 towards the patient's left in
either breast) and distance from the nipple. All three are geometry once the lesion is
segmented, so they are measured here in world (RAS+) millimetres:

- the body is what is brighter than air on a sequence where fat is bright (T2W);
- the midline is the middle of the body's left-right extent;
- each nipple lies at the most anterior point of the body on its side of the midline,
  centred on the front of that breast.

Depth (anterior/middle/posterior third) needs the chest wall and is left for the next
step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# The nipple's left-right and up-down position is the centre of the breast's front: the
# body points within this distance of its most anterior point (wide enough that a
# retracted nipple's notch does not pull it sideways).
NIPPLE_BAND_MM = 12.0


@dataclass(frozen=True)
class BreastLandmarks:
    midline_x_mm: float
    nipples_mm: dict[str, tuple[float, float, float]]  # "right" / "left" -> (x, y, z)


@dataclass(frozen=True)
class BreastPosition:
    laterality: str  # "right" | "left"
    clock_hour: int  # 1..12
    nipple_distance_mm: float


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


def find_landmarks(image: np.ndarray, affine: np.ndarray) -> BreastLandmarks:
    """Midline and nipples of a breast study from one volume where fat is bright (T2W)."""
    affine = np.asarray(affine, dtype=np.float64)
    body = _world(np.argwhere(body_mask(image)).astype(np.float64), affine)
    midline = float((body[:, 0].min() + body[:, 0].max()) / 2)
    nipples = {}
    for side, on_side in (("right", body[:, 0] > midline), ("left", body[:, 0] < midline)):
        points = body[on_side]
        if len(points) == 0:
            continue
        tip = points[:, 1].max()
        front = points[points[:, 1] >= tip - NIPPLE_BAND_MM]
        x, _, z = front.mean(0)
        nipples[side] = (round(float(x), 2), round(float(tip), 2), round(float(z), 2))
    return BreastLandmarks(round(midline, 2), nipples)


def clock_hour(offset_x_mm: float, offset_z_mm: float) -> int:
    """Clock face of an offset from the nipple in the coronal plane, facing the patient:
    12 is superior (+z), 3 towards the patient's left (-x in RAS)."""
    degrees = np.degrees(np.arctan2(-offset_x_mm, offset_z_mm)) % 360.0
    hour = int(np.round(degrees / 30.0)) % 12
    return 12 if hour == 0 else hour


def breast_position(
    centre_mm: tuple[float, float, float], marks: BreastLandmarks
) -> BreastPosition:
    """Side, clock face and nipple distance of a lesion centred at `centre_mm` (world)."""
    x, _, z = centre_mm
    side = "right" if x > marks.midline_x_mm else "left"  # RAS: patient right is +x
    if side not in marks.nipples_mm:
        raise ValueError(f"no {side} nipple was found in the image")
    nx, ny, nz = marks.nipples_mm[side]
    distance = float(np.linalg.norm(np.subtract(centre_mm, (nx, ny, nz))))
    return BreastPosition(side, clock_hour(x - nx, z - nz), round(distance, 1))
