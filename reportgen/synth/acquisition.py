"""Acquisition parameters: the grids a phantom is sampled on, and the scanner's habits.

Two protocols. `low_resolution`: every series on one grid (2.6 x 2.6 x 3 mm for the
breast), the phantoms every bundled model was trained on, kept for fast tests and as a
shift. `clinical` (breast): each series on its own grid, as scanners write them and as
accreditation requires (`CLINICAL_BREAST`, with the sources); the scene is painted once
on the finest grid (the DCE's) and each coarser series integrates it over its own
voxels (`reportgen.synth.mri.acquire_series`).

The default draw is one protocol with small variation (matrix fixed, spacing +-5 %,
patient off-centre by up to 1 cm). `shift="scanner"` draws a different scanner:
anisotropic voxels, other matrices, oblique slices, LPS storage, another b-value, more
noise and bias, different T2 contrast: what a model meets at another hospital.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from reportgen.io.sequences import sequence_family
from reportgen.synth.scene import Grid

DEFAULT_MATRIX = (96, 96, 40)
DEFAULT_SPACING = {
    "breast": (2.6, 2.6, 3.0),
    "cervix": (2.5, 2.5, 3.0),
    "endometrium": (2.5, 2.5, 3.0),
    "ovary": (2.5, 2.5, 3.0),
}


PROTOCOLS = ("low_resolution", "clinical")

# The clinical breast protocol: voxel size (mm: in-plane x, y; slice) per series family.
# - DCE: the ACR Breast MRI Accreditation Program requires the pre- and post-contrast T1
#   series at <= 1 mm in-plane in both directions and <= 3 mm slices without gap, the
#   first post-contrast phase within 4 minutes of injection (ACR BMRAP requirements).
# - T2W: about 1 mm in-plane with thicker slices, as T2/STIR series are acquired (ACR
#   BMRAP recommends T2W or STIR; EUSOBI recommendations, Mann et al., Eur Radiol 2008).
# - DWI and its ADC map: coarser, as real echo-planar DWI is: <= 2 x 2 mm in-plane and
#   4-5 mm slices (EUSOBI International Breast DWI Working Group, Baltzer et al., Eur
#   Radiol 2020).
CLINICAL_BREAST = {
    "dce": (0.9, 0.9, 2.0),
    "t2": (0.9, 0.9, 3.0),
    "diffusion": (1.9, 1.9, 4.5),
}
# Other accredited protocols `--shift scanner` draws from (other vendors' matrices).
CLINICAL_BREAST_SCANNERS = (
    {"dce": (0.8, 0.8, 1.6), "t2": (0.7, 0.7, 3.5), "diffusion": (1.7, 1.7, 4.0)},
    {"dce": (1.0, 1.0, 2.5), "t2": (1.0, 1.0, 4.0), "diffusion": (2.0, 2.0, 5.0)},
    {"dce": (0.95, 0.8, 1.8), "t2": (0.8, 0.8, 3.0), "diffusion": (2.0, 1.8, 4.0)},
)


@dataclass
class Acquisition:
    matrix: tuple[int, int, int]
    spacing: tuple[float, float, float]
    oblique_deg: float
    storage: str  # "RAS" or "LPS": the voxel order written to disk
    offset_mm: tuple[float, float, float]
    noise: float  # Rician noise sigma relative to soft tissue signal
    bias: float  # amplitude of the smooth receive-coil bias field
    motion: float  # blur sigma (voxels) along the phase-encode axis
    t2_contrast: float  # T2 contrast scaling (echo time differences)
    b_value: float
    severe_motion: bool = False
    protocol: str = "low_resolution"
    # Voxel size per sequence family (`reportgen.io.sequences.sequence_family`: "dce", "t2",
    # "diffusion"); empty: every series on `grid()`.
    series_spacing: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    # Width (voxels) of the receive-coil bias field's texture; 0: half the largest matrix
    # dimension, the whole field of view's. A view (`around`) keeps its parent's.
    bias_scale: float = 0.0

    @property
    def texture_scale(self) -> float:
        """Voxels of this grid per voxel of the low-resolution grid: textures, patterns and
        motion are drawn in millimetres, so a finer grid needs proportionally more voxels."""
        if self.protocol == "low_resolution":
            return 1.0
        return DEFAULT_SPACING["breast"][0] / float(min(self.spacing[:2]))

    def series_grid(self, name: str) -> Grid:
        """The grid series `name` is written on: its own voxel size over the same field of
        view, orientation and centre as the painted grid (`grid()`)."""
        family = sequence_family(name)
        spacing = self.series_spacing.get(family) if family else None
        if spacing is None or family == "dce":  # the DCE is the painted grid
            return self.grid()
        fov = np.asarray(self.matrix) * np.asarray(self.spacing)
        matrix = tuple(int(v) for v in np.maximum(1, np.round(fov / np.asarray(spacing))))
        return Acquisition(
            **{**asdict(self), "matrix": matrix, "spacing": tuple(spacing), "series_spacing": {}}
        ).grid()

    def around(self, centre_mm: np.ndarray, extent_mm: float) -> Acquisition:
        """This acquisition with its field of view narrowed to a cube of `extent_mm` centred
        on `centre_mm`: the same voxels, orientation, noise and bias field scale, so what is
        painted inside it is imaged as in the whole field of view (lesion views)."""
        matrix = tuple(int(np.ceil(extent_mm / s)) for s in self.spacing)
        return replace(
            self,
            matrix=matrix,
            offset_mm=tuple(float(v) for v in centre_mm),
            bias_scale=self.bias_scale or max(self.matrix) / 2.0,
        )

    def grid(self) -> Grid:
        direction = np.diag([-1.0, -1.0, 1.0]) if self.storage == "LPS" else np.eye(3)
        angle = np.deg2rad(self.oblique_deg)
        rot = np.array(
            [
                [np.cos(angle), -np.sin(angle), 0.0],
                [np.sin(angle), np.cos(angle), 0.0],
                [0.0, 0.0, 1.0],
            ]
        )
        linear = rot @ direction @ np.diag(self.spacing)
        centre_vox = (np.asarray(self.matrix) - 1) / 2.0
        affine = np.eye(4)
        affine[:3, :3] = linear
        affine[:3, 3] = np.asarray(self.offset_mm) - linear @ centre_vox
        return Grid(tuple(self.matrix), affine)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        out["series_spacing"] = {k: list(v) for k, v in self.series_spacing.items()}
        return out


def sample_acquisition(
    rng: np.random.Generator,
    domain: str,
    shift: str | None = None,
    severe_motion: bool = False,
    protocol: str = "low_resolution",
) -> Acquisition:
    """The acquisition of one phantom. The low-resolution draws are unchanged (the same
    seed gives the same bytes as before the clinical protocol existed)."""
    if protocol == "clinical":
        return _clinical(rng, shift, severe_motion)
    base = DEFAULT_SPACING[domain]
    offset = tuple(float(v) for v in rng.uniform(-10, 10, size=3))
    if shift == "scanner":
        matrix = tuple(int(v) for v in rng.choice([(112, 112, 32), (80, 80, 48), (128, 96, 36)]))
        fov = np.asarray(DEFAULT_MATRIX) * np.asarray(base)
        spacing = tuple(
            float(f / m) for f, m in zip(fov * rng.uniform(0.92, 1.08, size=3), matrix, strict=True)
        )
        return Acquisition(
            matrix=matrix,  # type: ignore[arg-type]
            spacing=spacing,  # type: ignore[arg-type]
            oblique_deg=float(rng.uniform(5, 12) * rng.choice([-1, 1])),
            storage="LPS",
            offset_mm=offset,  # type: ignore[arg-type]
            noise=float(rng.uniform(0.04, 0.07)),
            bias=float(rng.uniform(0.2, 0.3)),
            motion=float(rng.uniform(0.3, 0.8)),
            t2_contrast=float(rng.uniform(0.75, 0.9)),
            b_value=1000.0,
            severe_motion=severe_motion,
        )
    spacing = tuple(float(s * rng.uniform(0.95, 1.05)) for s in base)
    return Acquisition(
        matrix=DEFAULT_MATRIX,
        spacing=spacing,  # type: ignore[arg-type]
        oblique_deg=0.0,
        storage="RAS",
        offset_mm=offset,  # type: ignore[arg-type]
        noise=float(rng.uniform(0.02, 0.04)),
        bias=float(rng.uniform(0.05, 0.15)),
        motion=float(rng.uniform(0.0, 0.4)),
        t2_contrast=1.0,
        b_value=800.0,
        severe_motion=severe_motion,
    )


def _clinical(rng: np.random.Generator, shift: str | None, severe_motion: bool) -> Acquisition:
    """The clinical breast protocol (`CLINICAL_BREAST`), or under `shift="scanner"`
    another accredited one, oblique and stored LPS, with that scanner's noise and contrast.
    The field of view is the low-resolution one (250 x 250 x 120 mm); the painted grid is
    the DCE's."""
    fov = np.asarray(DEFAULT_MATRIX) * np.asarray(DEFAULT_SPACING["breast"])
    offset = tuple(float(v) for v in rng.uniform(-10, 10, size=3))
    scanner = shift == "scanner"
    series = (
        CLINICAL_BREAST_SCANNERS[int(rng.integers(len(CLINICAL_BREAST_SCANNERS)))]
        if scanner
        else CLINICAL_BREAST
    )
    dce = np.asarray(series["dce"]) * (1.0 if scanner else rng.uniform(0.97, 1.03))
    matrix = tuple(int(v) for v in np.round(fov / dce))
    spacing = tuple(float(v) for v in fov / np.asarray(matrix))
    return Acquisition(
        matrix=matrix,  # type: ignore[arg-type]
        spacing=spacing,  # type: ignore[arg-type]
        oblique_deg=float(rng.uniform(5, 12) * rng.choice([-1, 1])) if scanner else 0.0,
        storage="LPS" if scanner else "RAS",
        offset_mm=offset,  # type: ignore[arg-type]
        noise=float(rng.uniform(0.04, 0.07) if scanner else rng.uniform(0.02, 0.04)),
        bias=float(rng.uniform(0.2, 0.3) if scanner else rng.uniform(0.05, 0.15)),
        motion=float(rng.uniform(0.3, 0.8) if scanner else rng.uniform(0.0, 0.4)),
        t2_contrast=float(rng.uniform(0.75, 0.9)) if scanner else 1.0,
        b_value=1000.0 if scanner else 800.0,
        severe_motion=severe_motion,
        protocol="clinical",
        series_spacing={
            **{k: tuple(float(x) for x in v) for k, v in series.items()},
            "dce": spacing,
        },
    )
