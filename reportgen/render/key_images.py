"""Axial images as a radiologist reads them: radiological convention, R and L marked.

Every image the product writes shows an axial slice the same way, whatever order the
volume's voxels are stored in: the patient's right on the viewer's left, anterior at the
top, an "R" and an "L" at the edges. One definition, so the printable page's key images
and the evidence heat maps can never disagree (a heat map once showed a left-breast
lesion on the image's left, in neurological convention, with no marker).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

DISPLAY_PIXELS = 384  # an image's longer side is scaled up by whole voxels to about this


def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The volume with its voxel axes in RAS+ order and direction (nearest canonical:
    voxels are reordered, never resampled)."""
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data), np.asarray(affine)))
    return np.asarray(image.dataobj), image.affine


def box_corner_voxels(box, affine: np.ndarray) -> np.ndarray:
    """The eight corners of a world box (`Box`, mm) in a grid's voxel coordinates (8, 3)."""
    inverse = np.linalg.inv(np.asarray(affine, np.float64))
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    lo, hi = np.asarray(box.min_mm), np.asarray(box.max_mm)
    return (lo + corners * (hi - lo)) @ inverse[:3, :3].T + inverse[:3, 3]


def radiological(plane: np.ndarray) -> np.ndarray:
    """An axial plane of a canonical volume (indexed [x, y]: in RAS+ x runs towards the
    patient's right, y towards anterior) as display rows and columns: rows anterior ->
    posterior, columns patient right -> left."""
    return np.swapaxes(np.asarray(plane), 0, 1)[::-1, ::-1]  # (a colour axis may follow)


# CT window presets, (level, width) in HU, as reading stations name them: the abdominal
# soft-tissue window (W 400, L 40), and a narrower pancreas window centred between the
# pancreatic-phase parenchyma (about 100-130 HU) and a hypoattenuating tumour (about
# 40-70 HU), so the tumour's edge against the gland and its vessels is what shows
CT_WINDOWS: dict[str, tuple[float, float]] = {"abdomen": (40.0, 400.0), "pancreas": (80.0, 300.0)}
# each CT phase's window: the pancreatic phase in the pancreas window (the tumour against
# the gland, the arteries), the others in the abdominal window (veins, liver)
CT_PRESETS = {"CT_PANC": "pancreas", "CT_PV": "abdomen", "CT_NC": "abdomen", "CT": "abdomen"}


def window(plane: np.ndarray, preset: str | None = None) -> np.ndarray:
    """Grey levels 0-1: a CT plane (HU) through a named `CT_WINDOWS` preset, which keeps
    HU meaning the same grey on every image; otherwise (MRI, arbitrary units) over the
    plane's 1st to 99.5th percentile."""
    if preset is not None:
        level, width = CT_WINDOWS[preset]
        low, high = level - width / 2, level + width / 2
    else:
        low, high = np.percentile(plane, [1, 99.5])
    return np.clip((plane - low) / max(float(high - low), 1e-6), 0, 1)


def with_heat(grey: np.ndarray, heat: np.ndarray | None) -> np.ndarray:
    """A grey plane (0-1) as RGB with a heat map (0-1) over it, red to yellow, as opaque as
    the heat is strong (half at most)."""
    rgb = np.repeat(np.asarray(grey, float)[..., None], 3, axis=-1)
    if heat is None:
        return rgb
    h = np.clip(np.asarray(heat, float), 0.0, 1.0)[..., None]
    colour = np.concatenate([np.ones_like(h), h, np.zeros_like(h)], axis=-1)
    return rgb * (1 - 0.5 * h) + colour * 0.5 * h


def enlarged(image: Image.Image) -> tuple[Image.Image, int]:
    """The image scaled up by a whole factor (each voxel a block of pixels) and the factor."""
    scale = max(1, DISPLAY_PIXELS // max(image.size))
    return image.resize(
        (image.width * scale, image.height * scale), Image.Resampling.NEAREST
    ), scale


def mark_sides(image: Image.Image) -> Image.Image:
    """ "R" at the left edge and "L" at the right (radiological convention)."""
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), "R", fill=(255, 255, 255))
    draw.text((image.width - 12, 4), "L", fill=(255, 255, 255))
    return image
