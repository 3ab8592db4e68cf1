"""A draft's study as volumes for the review page's viewer (NiiVue, in the browser).

The viewer needs whole volumes to scroll, reslice, zoom and window without a round trip
per slice. A signed-in clinician's browser gets, per request, one volume it displays:
a sequence as the model read it (the loader that feeds the model), the early
subtraction (first post-contrast minus pre-contrast phase, as breast MRI is read), its
maximum intensity projection, the dynamic series as one 4D volume (the viewer plots the
time-intensity curve at its cursor), or the draft's evidence (heat maps, and each
finding's box as a label). Every file is written here from voxels and an affine only:
no name, date or identifier of the source headers reaches the browser.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from reportgen.report.schema import Box
from reportgen.review.viewer import DisplayVolume

SUBTRACTION, MIP, DYNAMIC, HEAT, BOXES = "SUB", "MIP", "DCE", "heat", "boxes"
NAME = re.compile(r"^[A-Za-z0-9_]{1,32}$")
GZIP_LEVEL = 1  # these volumes are noisy: higher levels cost seconds and save little


@dataclass(frozen=True)
class ViewerVolume:
    """One volume the viewer may load: `kind` is image, dynamic (4D) or overlay."""

    name: str
    label: str
    kind: str
    # the grey range (low, high) a CT phase is shown in (its `CT_WINDOWS` preset); None:
    # the viewer's own range of the image's values
    window: tuple[float, float] | None = None


def _phases(volumes: dict[str, DisplayVolume]) -> list[DisplayVolume]:
    """The dynamic series' phases in order, while they share the pre-contrast grid."""
    phases = []
    for k in range(100):
        volume = volumes.get(f"DCE_{k}")
        if volume is None:
            break
        if phases and (
            volume.data.shape != phases[0].data.shape
            or not np.allclose(volume.affine, phases[0].affine, atol=1e-3)
        ):
            break
        phases.append(volume)
    return phases


def available(volumes: dict[str, DisplayVolume], heat: bool, boxes: bool) -> list[ViewerVolume]:
    """What the viewer may load for a study: its sequences, what the dynamic series
    gives (with a pre- and a post-contrast phase on one grid) and the draft's evidence
    (its heat maps, its boxes) where the draft has it."""
    out = [
        ViewerVolume(
            name,
            f"{name} ({v.preset} window)" if v.preset else name,
            "image",
            (v.level - v.width / 2, v.level + v.width / 2) if v.preset else None,
        )
        for name, v in volumes.items()
    ]
    phases = _phases(volumes)
    if len(phases) >= 2:
        out += [
            ViewerVolume(SUBTRACTION, "Subtraction (early post − pre)", "image"),
            ViewerVolume(MIP, "MIP of the subtraction (axial)", "image"),
            ViewerVolume(DYNAMIC, "Dynamic series (curve at the cursor)", "dynamic"),
        ]
    if heat:
        out.append(ViewerVolume(HEAT, "Heat map", "overlay"))
    if boxes:
        out.append(ViewerVolume(BOXES, "Boxes", "overlay"))
    return out


def _subtraction(phases: list[DisplayVolume]) -> np.ndarray:
    return phases[1].data - phases[0].data


def image_volume(volumes: dict[str, DisplayVolume], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(voxels, affine) of an image or dynamic volume `name` (KeyError: not available)."""
    if name in volumes:
        return volumes[name].data, volumes[name].affine
    phases = _phases(volumes)
    if len(phases) < 2 or name not in (SUBTRACTION, MIP, DYNAMIC):
        raise KeyError(name)
    affine = phases[0].affine
    if name == DYNAMIC:
        return np.stack([p.data for p in phases], axis=-1), affine
    subtraction = _subtraction(phases)
    if name == SUBTRACTION:
        return subtraction, affine
    # volumes are in RAS voxel order: the third axis runs foot to head, the projection's
    # one slice sits at the study's middle
    middle = affine.copy()
    middle[:3, 3] = affine[:3, :3] @ [0, 0, (subtraction.shape[2] - 1) / 2] + affine[:3, 3]
    return subtraction.max(axis=2, keepdims=True), middle


def box_labels(reference: DisplayVolume, boxes: list[Box | None]) -> np.ndarray:
    """Each finding's box drawn as its six faces (one voxel thick) on the reference grid,
    labelled with the finding's number (1, 2, ...), so every plane through a box shows
    its outline."""
    labels = np.zeros(reference.data.shape[:3], np.uint8)
    inverse = np.linalg.inv(reference.affine)
    for number, box in enumerate(boxes, start=1):
        if box is None:
            continue
        lo, hi = np.asarray(box.min_mm, float), np.asarray(box.max_mm, float)
        corners = np.array(
            [[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        voxels = (inverse @ corners.T)[:3]
        first = np.clip(np.floor(voxels.min(1) + 0.5).astype(int), 0, np.array(labels.shape) - 1)
        last = np.clip(np.floor(voxels.max(1) + 0.5).astype(int), 0, np.array(labels.shape) - 1)
        region = tuple(slice(a, b + 1) for a, b in zip(first, last, strict=True))
        shell = np.zeros(labels.shape, bool)
        shell[region] = True
        inner = tuple(slice(a + 1, b) for a, b in zip(first, last, strict=True))
        shell[inner] = False
        labels[shell] = min(number, 255)
    return labels


def nifti_gz(
    data: np.ndarray, affine: np.ndarray, window: tuple[float, float] | None = None
) -> bytes:
    """A gzipped NIfTI-1 of `data` written from scratch (voxels, affine, display window):
    labels as bytes, anything else as 16-bit integers times a slope (no intercept: one
    convention every reader applies alike)."""
    data = np.nan_to_num(np.asarray(data), nan=0.0, posinf=0.0, neginf=0.0)
    if data.dtype == np.uint8:
        stored, slope = data, 1.0
    else:
        peak = float(np.abs(data).max())
        slope = peak / 32767.0 if peak > 0 else 1.0
        stored = np.round(data / slope).astype(np.int16)
    image = nib.Nifti1Image(stored, affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    header.set_slope_inter(slope, 0.0)
    if window is not None:
        header["cal_min"], header["cal_max"] = window
    return gzip.compress(image.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0)


def window_of(data: np.ndarray) -> tuple[float, float]:
    """The 1st to 99th percentile of the voxels that are not zero (the display window)."""
    values = data[np.isfinite(data) & (data != 0)]
    if not values.size:
        return 0.0, 1.0
    low, high = np.percentile(values, [1, 99])
    return float(low), float(max(high, low + 1e-6))
