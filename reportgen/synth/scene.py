"""A tiny renderer for phantoms: shapes in world millimetres, painted with partial volume.

Shapes are signed distance functions (negative inside) evaluated only inside their
bounding box. Each voxel carries tissue properties (T2 signal, diffusion S0, ADC, T1
signal and the enhancement at each DCE phase); painting a shape blends its tissue in
by the fraction of the voxel it covers, so partial volume comes from geometry, and a
lesion's size in millimetres is the same whatever the voxel grid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PROPS = ("t2", "s0", "adc", "t1", "e1", "e2", "e3")
N_PROPS = len(PROPS)

SDF = Callable[[np.ndarray], np.ndarray]  # points (..., 3) in mm -> signed distance (...)


@dataclass(frozen=True)
class Tissue:
    """Signal-forming properties. ADC in 1e-6 mm^2/s; e1..e3 relative enhancement."""

    t2: float
    s0: float
    adc: float
    t1: float
    e1: float = 0.0
    e2: float = 0.0
    e3: float = 0.0

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, p) for p in PROPS], dtype=np.float32)

    def with_(self, **changes: float) -> Tissue:
        return Tissue(**{**{p: getattr(self, p) for p in PROPS}, **changes})


@dataclass
class Grid:
    """Voxel grid: shape and affine (voxel -> world RAS mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def slices_along_z(self) -> bool:
        """True when voxel axis 2 is world z and axes 0-1 lie in the axial plane."""
        a = self.affine[:3, :3]
        return bool(
            abs(a[2, 0]) < 1e-9
            and abs(a[2, 1]) < 1e-9
            and abs(a[0, 2]) < 1e-9
            and abs(a[1, 2]) < 1e-9
        )

    def points(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        """World coordinates (..., 3) of the voxels in a box of index slices."""
        idx = np.stack(
            np.meshgrid(
                *[np.arange(s.start, s.stop, dtype=np.float32) for s in box], indexing="ij"
            ),
            axis=-1,
        )
        return idx @ self.affine[:3, :3].T.astype(np.float32) + self.affine[:3, 3].astype(
            np.float32
        )

    def box_of(
        self, lo: np.ndarray, hi: np.ndarray, margin: int = 2
    ) -> tuple[slice, slice, slice] | None:
        """Index slices covering a world-space box (conservative for oblique grids)."""
        corners = np.array(
            [[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        vox = (np.linalg.inv(self.affine) @ corners.T)[:3].T
        start = np.floor(vox.min(axis=0)).astype(int) - margin
        stop = np.ceil(vox.max(axis=0)).astype(int) + margin + 1
        start = np.clip(start, 0, self.shape)
        stop = np.clip(stop, 0, self.shape)
        if np.any(stop <= start):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))  # type: ignore[return-value]


class Canvas:
    """Property maps being painted, plus an integer label map for lesion masks. The
    properties are the background tissue's (`Tissue` for MRI, a CT tissue's attenuation
    per phase for CT): anything with a `vector()` paints."""

    def __init__(self, grid: Grid, background: Tissue):
        self.grid = grid
        vector = background.vector()
        self.props = np.empty((len(vector), *grid.shape), dtype=np.float32)
        self.props[:] = vector[:, None, None, None]
        self.labels = np.zeros(grid.shape, dtype=np.int16)
        self.pv_width = float(np.min(grid.spacing))
        # Voxels per low-resolution voxel (`Acquisition.texture_scale`): texture sizes given
        # in voxels of the low-resolution grid are multiplied by it.
        self.texture_scale = 1.0

    def paint(
        self,
        sdf: SDF,
        bounds: tuple[np.ndarray, np.ndarray],
        tissue: Tissue | Callable[[np.ndarray, np.ndarray], np.ndarray],
        label: int = 0,
        blur: float = 1.0,
        extruded: bool = False,
        keep_labels: bool = False,
    ) -> np.ndarray | None:
        """Blend a shape in; `tissue` may be a function (points, sdf) -> props (7, ...).

        `extruded` marks shapes that do not change along z (the body, the bony pelvis):
        the distance is computed on one slice and repeated, when the grid's third axis
        is z (true for axial acquisitions, oblique in-plane or not).
        Returns the covered fraction inside the shape's box (None if off-grid).
        """
        box = self.grid.box_of(*bounds)
        if box is None:
            return None
        if extruded and self.grid.slices_along_z:
            first = (box[0], box[1], slice(box[2].start, box[2].start + 1))
            dist = np.broadcast_to(
                sdf(self.grid.points(first)), tuple(s.stop - s.start for s in box)
            )
            pts = None
        else:
            pts = self.grid.points(box)
            dist = sdf(pts)
        frac = np.clip(0.5 - dist / (self.pv_width * blur), 0.0, 1.0).astype(np.float32)
        if not frac.any():
            return frac
        if hasattr(tissue, "vector"):
            values = tissue.vector()[:, None, None, None]
        else:
            values = tissue(self.grid.points(box) if pts is None else pts, dist)
        region = self.props[(slice(None), *box)]
        region += frac[None] * (values - region)
        if label:
            covered = frac >= 0.5
            if keep_labels:  # e.g. a tumour extension does not relabel the primary
                covered &= self.labels[box] == 0
            self.labels[box][covered] = label
        return frac


# --- signed distance functions ------------------------------------------------------------


def rotation(rng: np.random.Generator, max_deg: float = 180.0) -> np.ndarray:
    """A random rotation matrix (uniform axis, angle up to max_deg)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def ellipsoid(
    center, semi_axes, rot: np.ndarray | None = None
) -> tuple[SDF, tuple[np.ndarray, np.ndarray]]:
    c = np.asarray(center, np.float32)
    a = np.asarray(semi_axes, np.float32)
    r = np.eye(3, dtype=np.float32) if rot is None else rot.astype(np.float32)

    def sdf(p: np.ndarray) -> np.ndarray:
        q = ((p - c) @ r) / a
        return (np.linalg.norm(q, axis=-1) - 1.0) * a.min()

    ext = float(a.max())
    return sdf, (c - ext, c + ext)


class Harmonics:
    """A smooth random radial modulation 1 + sum a_k cos(k . u + phi) over unit vectors u."""

    def __init__(
        self, rng: np.random.Generator, amplitude: float, n_terms: int = 6, max_freq: float = 3.0
    ):
        self.k = rng.normal(size=(n_terms, 3)).astype(np.float32)
        self.k *= (
            rng.uniform(1.0, max_freq, size=(n_terms, 1))
            / np.linalg.norm(self.k, axis=1, keepdims=True)
        ).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, size=n_terms).astype(np.float32)
        self.amp = (amplitude / np.sqrt(n_terms) * rng.uniform(0.5, 1.0, size=n_terms)).astype(
            np.float32
        )

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return 1.0 + np.cos(u @ self.k.T + self.phase) @ self.amp


def blob(
    center, semi_axes, rot: np.ndarray, modulation: Harmonics
) -> tuple[SDF, tuple[np.ndarray, np.ndarray], float]:
    """An ellipsoid whose radius is modulated by direction; also returns its longest diameter (mm)."""
    c = np.asarray(center, np.float32)
    a = np.asarray(semi_axes, np.float32)
    r = rot.astype(np.float32)

    def sdf(p: np.ndarray) -> np.ndarray:
        q = ((p - c) @ r) / a
        n = np.linalg.norm(q, axis=-1)
        u = q / np.maximum(n, 1e-6)[..., None]
        return (n - modulation(u)) * a.min()

    # Longest diameter: max over directions of the extent along u plus along -u.
    u = _sphere_directions(600)
    radius_mm = modulation(u)[:, None] * u * a  # surface points in the body frame
    extent = np.linalg.norm(radius_mm[: len(u) // 2] - radius_mm[len(u) // 2 :], axis=1)
    longest = float(extent.max())
    ext = float(a.max() * (1 + modulation.amp.sum()))
    return sdf, (c - ext, c + ext), longest


def _sphere_directions(n: int) -> np.ndarray:
    """n/2 Fibonacci directions followed by their antipodes."""
    half = n // 2
    i = np.arange(half) + 0.5
    phi = np.arccos(1 - 2 * i / half)
    theta = np.pi * (1 + 5**0.5) * i
    u = np.stack(
        [np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1
    ).astype(np.float32)
    return np.concatenate([u, -u])


def capsule(a, b, radius: float) -> tuple[SDF, tuple[np.ndarray, np.ndarray]]:
    pa = np.asarray(a, np.float32)
    pb = np.asarray(b, np.float32)
    ab = pb - pa
    denom = float(ab @ ab) or 1.0

    def sdf(p: np.ndarray) -> np.ndarray:
        t = np.clip(((p - pa) @ ab) / denom, 0.0, 1.0)
        return np.linalg.norm(p - (pa + t[..., None] * ab), axis=-1) - radius

    return sdf, (np.minimum(pa, pb) - radius, np.maximum(pa, pb) + radius)


def smooth_union(sdfs: list[SDF], k: float) -> SDF:
    """The union of shapes with fillets `k` mm wide where they meet (a polynomial smooth
    minimum): lobes that merge into one mass instead of touching spheres."""

    def sdf(p: np.ndarray) -> np.ndarray:
        d = sdfs[0](p)
        for other in sdfs[1:]:
            e = other(p)
            h = np.clip(0.5 + 0.5 * (e - d) / k, 0.0, 1.0)
            d = e + (d - e) * h - k * h * (1.0 - h)
        return d

    return sdf


class SurfaceWaves:
    """Roughness of a surface in millimetres: a sum of plane waves of wavelengths
    `wavelength_mm`, so its scale is anatomical whatever the lesion's size or the grid."""

    def __init__(
        self,
        rng: np.random.Generator,
        amplitude_mm: float,
        wavelength_mm: tuple[float, float],
        n_terms: int = 24,
    ):
        k = rng.normal(size=(n_terms, 3))
        k /= np.linalg.norm(k, axis=1, keepdims=True)
        self.k = (k * (2 * np.pi / rng.uniform(*wavelength_mm, size=(n_terms, 1)))).astype(
            np.float32
        )
        self.phase = rng.uniform(0, 2 * np.pi, size=n_terms).astype(np.float32)
        self.amplitude = float(amplitude_mm) * np.sqrt(2.0 / n_terms)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return self.amplitude * np.cos(p @ self.k.T + self.phase).sum(-1)


def roughen(sdf: SDF, waves: SurfaceWaves) -> SDF:
    return lambda p: sdf(p) + waves(p)


def longest_diameter(sdf: SDF, bounds: tuple[np.ndarray, np.ndarray]) -> float:
    """The longest distance (mm) between two points of a shape: over the convex hull of
    its inside on a lattice of 64 steps across its bounds (at least 0.5 mm)."""
    from scipy.spatial import ConvexHull, QhullError

    lo, hi = (np.asarray(b, np.float32) for b in bounds)
    step = max(0.5, float((hi - lo).max()) / 64)
    axes = [np.arange(a, b + step, step, dtype=np.float32) for a, b in zip(lo, hi, strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    inside = points[sdf(points) < 0]
    if len(inside) < 4:
        return float(step * len(inside))
    with contextlib.suppress(QhullError):  # flat: every point is on the hull
        inside = inside[ConvexHull(inside).vertices]
    gaps = inside[:, None, :] - inside[None, :, :]
    return float(np.sqrt((gaps**2).sum(-1)).max()) + step


def intersect(first: SDF, second: SDF) -> SDF:
    return lambda p: np.maximum(first(p), second(p))


def subtract(first: SDF, second: SDF) -> SDF:
    return lambda p: np.maximum(first(p), -second(p))


def shell(sdf: SDF, thickness: float) -> SDF:
    """The skin of a shape: |d| - t/2, a layer `thickness` thick centred on its surface."""
    return lambda p: np.abs(sdf(p) + thickness / 2) - thickness / 2


def half_space(point, normal) -> SDF:
    """Negative on the side `normal` points to."""
    n = np.asarray(normal, np.float32) / np.linalg.norm(normal)
    o = np.asarray(point, np.float32)
    return lambda p: -((p - o) @ n)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Band-limited noise in [0, 1] (low-resolution noise, upsampled), for texture."""
    from scipy.ndimage import zoom

    coarse_shape = tuple(max(2, round(s / scale) + 2) for s in shape)
    coarse = rng.random(coarse_shape, dtype=np.float32)
    fine = zoom(coarse, [s / c for s, c in zip(shape, coarse_shape, strict=True)], order=1)
    fine = fine[tuple(slice(0, s) for s in shape)]
    lo, hi = fine.min(), fine.max()
    return (fine - lo) / (hi - lo + 1e-6)
