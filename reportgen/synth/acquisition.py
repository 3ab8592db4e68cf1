"""Acquisition parameters: the grid a phantom is sampled on, and the scanner's habits.

The default draw is one protocol with small variation (matrix fixed, spacing +-5 %,
patient off-centre by up to 1 cm). `shift="scanner"` draws a different scanner:
anisotropic voxels, other matrices, oblique slices, LPS storage, another b-value, more
noise and bias, different T2 contrast: what a model meets at another hospital.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from reportgen.synth.scene import Grid

DEFAULT_MATRIX = (96, 96, 40)
DEFAULT_SPACING = {
    "breast": (2.6, 2.6, 3.0),
    "cervix": (2.5, 2.5, 3.0),
    "endometrium": (2.5, 2.5, 3.0),
    "ovary": (2.5, 2.5, 3.0),
}


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
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def sample_acquisition(
    rng: np.random.Generator, domain: str, shift: str | None = None, severe_motion: bool = False
) -> Acquisition:
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
