"""The study as the review page shows it: display volumes from the loader the model reads
(so what the clinician sees is what the model saw), and slices rendered on the server
with the model's heat map and boxes on top.

The page's viewer is NiiVue in the browser (`reportgen.review.volumes` sends it the
volumes); these server-rendered slices are its fallback where the browser has no WebGL2.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import map_coordinates

from reportgen.errors import InputError
from reportgen.render.key_images import (
    CT_PRESETS,
    CT_WINDOWS,
    mark_sides,
    radiological,
    with_heat,
)
from reportgen.report.schema import Box

DISPLAY_SIZE = 384


class PathRefused(InputError):
    """A path that would leave the configured studies folder."""


def inside(root: Path, relative: str | None) -> Path:
    """`root / relative`, refusing anything that resolves outside `root` (.., symlinks)."""
    if not relative:
        raise PathRefused(None, "no path recorded")
    root = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise PathRefused(None, "path is outside the studies folder")
    return candidate


@dataclass
class DisplayVolume:
    """A volume reoriented to the nearest RAS voxel order, with display window defaults."""

    data: np.ndarray
    affine: np.ndarray
    level: float
    width: float
    preset: str | None = None  # the CT window the level and width come from

    @classmethod
    def of(cls, data: np.ndarray, affine: np.ndarray, preset: str | None = None) -> DisplayVolume:
        """`preset`: a CT window (`CT_WINDOWS`, HU), else the 1st-99th percentile."""
        image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), affine))
        volume = np.asarray(image.dataobj, dtype=np.float32)
        if preset is not None:
            level, width = CT_WINDOWS[preset]
            return cls(volume, image.affine, level, width, preset)
        finite = volume[np.isfinite(volume)]
        low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        return cls(volume, image.affine, float((low + high) / 2), float(max(high - low, 1e-6)))

    @property
    def slices(self) -> int:
        return int(self.data.shape[2])


class StudyCache:
    """A few recently viewed studies in memory (loading a study takes about a second)."""

    ENCODED_BYTES = 256 * 1024 * 1024  # the browser viewer's encoded volumes kept, at most

    def __init__(self, size: int = 4):
        self._items: OrderedDict[str, dict[str, DisplayVolume]] = OrderedDict()
        self._size = size
        self._lock = Lock()
        self._encoded: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def encoded(self, path: Path, name: str, encode: Callable[[], bytes]) -> bytes:
        """A volume of a study as the browser viewer gets it, encoded once: compressing a
        dynamic series takes seconds, and a page reload or a second pane asks again."""
        key = (str(path), name)
        with self._lock:
            if key in self._encoded:
                self._encoded.move_to_end(key)
                return self._encoded[key]
        body = encode()
        with self._lock:
            self._encoded[key] = body
            while sum(map(len, self._encoded.values())) > self.ENCODED_BYTES:
                self._encoded.popitem(last=False)
        return body

    def get(self, path: Path) -> dict[str, DisplayVolume]:
        key = str(path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        from reportgen.io import load_study

        study = load_study(path)
        volumes = {
            name: DisplayVolume.of(v.data, v.affine, CT_PRESETS.get(name))
            for name, v in study.sequences.items()
        }
        with self._lock:
            self._items[key] = volumes
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return volumes


def load_heatmap(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj, dtype=np.float32), image.affine


def _heat_on_slice(
    volume: DisplayVolume, z: int, heat: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Sample the heat map (its own grid) at the world position of each voxel of slice z."""
    data, affine = heat
    nx, ny = volume.data.shape[:2]
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    voxels = np.stack([i.ravel(), j.ravel(), np.full(i.size, z), np.ones(i.size)])
    world = volume.affine @ voxels
    inside_heat = np.linalg.inv(affine) @ world
    values = map_coordinates(data, inside_heat[:3], order=1, mode="constant", cval=0.0)
    return values.reshape(nx, ny)


def _box_on_slice(
    volume: DisplayVolume, z: int, box: Box
) -> tuple[float, float, float, float] | None:
    lo, hi = np.asarray(box.min_mm), np.asarray(box.max_mm)
    corners = np.array(
        [[x, y, w, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for w in (lo[2], hi[2])]
    )
    voxels = (np.linalg.inv(volume.affine) @ corners.T)[:3]
    if not voxels[2].min() - 0.5 <= z <= voxels[2].max() + 0.5:
        return None
    return (
        float(voxels[0].min()),
        float(voxels[1].min()),
        float(voxels[0].max()),
        float(voxels[1].max()),
    )


def render_slice(
    volume: DisplayVolume,
    z: int,
    level: float | None = None,
    width: float | None = None,
    heat: tuple[np.ndarray, np.ndarray] | None = None,
    boxes: list[Box] | None = None,
) -> bytes:
    """One axial slice as PNG in radiological convention (patient's right on the left,
    marked R and L)."""
    z = int(np.clip(z, 0, volume.slices - 1))
    level = volume.level if level is None else level
    width = volume.width if width is None or width <= 0 else width
    plane = np.nan_to_num(volume.data[:, :, z], nan=0.0)
    gray = np.clip((plane - (level - width / 2)) / width, 0.0, 1.0)
    overlay = None if heat is None else _heat_on_slice(volume, z, heat)
    rgb = with_heat(gray, overlay)
    screen = np.ascontiguousarray(radiological(rgb))
    nx, ny = plane.shape
    spacing = np.sqrt((volume.affine[:3, :3] ** 2).sum(axis=0))
    aspect = (ny * spacing[1]) / (nx * spacing[0])
    size = (DISPLAY_SIZE, max(1, round(DISPLAY_SIZE * aspect)))
    image = Image.fromarray((screen * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    sx, sy = size[0] / nx, size[1] / ny
    for box in boxes or []:
        rect = _box_on_slice(volume, z, box)
        if rect is None:
            continue
        x0, y0, x1, y1 = rect
        # same flips as the image: column = nx-1-x, row = ny-1-y
        draw.rectangle(
            [(nx - 1 - x1) * sx, (ny - 1 - y1) * sy, (nx - x0) * sx, (ny - y0) * sy],
            outline=(0, 255, 0),
            width=2,
        )
    mark_sides(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
