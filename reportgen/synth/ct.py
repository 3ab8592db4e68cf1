"""CT acquisition for phantoms: the grid a scanner reconstructs, its kernel, slice profile,
dose noise and bolus timing, from attenuation maps (HU) to images stored in HU.

Default: a pancreatic protocol as the SAR/APA consensus (Al-Hawary et al., Radiology
2014) asks for it: thin slices (2 mm here; <= 3 mm recommended) at about 1 mm in-plane,
a soft-tissue kernel, standard dose. `shift="scanner"` draws another hospital's
reconstruction: a sharper kernel at 0.7-0.9 mm in-plane with low-dose noise, or thicker
3-5 mm slices, stored LPS, with another bolus timing (how far each phase's enhancement
is from the reference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from reportgen.synth.scene import Canvas, Grid

FIELD_OF_VIEW_MM = (320.0, 256.0, 160.0)  # x, y, z: the abdomen from the celiac axis down
HU_RANGE = (-1024.0, 3071.0)  # what 12-bit CT stores


@dataclass(frozen=True)
class CTAcquisition:
    spacing: tuple[float, float, float]
    slice_mm: float  # reconstructed slice thickness (the z profile's FWHM)
    kernel_mm: float  # in-plane blur of the reconstruction kernel (Gaussian sigma, mm)
    noise_hu: float  # image noise (standard deviation in water, HU)
    enhancement: float  # contrast uptake relative to the reference timing (1: as drawn)
    storage: str  # "RAS" or "LPS"
    offset_mm: tuple[float, float, float]
    kernel: str = "soft"

    @property
    def matrix(self) -> tuple[int, int, int]:
        return tuple(round(f / s) for f, s in zip(FIELD_OF_VIEW_MM, self.spacing, strict=True))  # type: ignore[return-value]

    def grid(self) -> Grid:
        direction = np.diag([-1.0, -1.0, 1.0]) if self.storage == "LPS" else np.eye(3)
        linear = direction @ np.diag(self.spacing)
        centre_vox = (np.asarray(self.matrix) - 1) / 2.0
        affine = np.eye(4)
        affine[:3, :3] = linear
        affine[:3, 3] = np.asarray(self.offset_mm) - linear @ centre_vox
        return Grid(self.matrix, affine)

    def to_dict(self) -> dict:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        out["matrix"] = list(self.matrix)
        return out


def sample_ct_acquisition(rng: np.random.Generator, shift: str | None = None) -> CTAcquisition:
    offset = tuple(float(v) for v in rng.uniform(-6, 6, size=3))
    if shift == "scanner":
        thin = bool(rng.random() < 0.5)
        in_plane = float(rng.uniform(0.7, 0.9)) if thin else float(rng.uniform(0.8, 1.0))
        slice_mm = float(rng.uniform(1.0, 1.5)) if thin else float(rng.choice([3.0, 4.0, 5.0]))
        return CTAcquisition(
            spacing=(in_plane, in_plane, slice_mm),
            slice_mm=slice_mm,
            kernel_mm=0.35 if thin else 0.8,
            noise_hu=float(rng.uniform(20, 30)) if thin else float(rng.uniform(8, 14)),
            enhancement=float(rng.uniform(0.75, 1.2)),
            storage="LPS",
            offset_mm=offset,  # type: ignore[arg-type]
            kernel="sharp" if thin else "soft",
        )
    in_plane = float(rng.uniform(0.97, 1.03))
    return CTAcquisition(
        spacing=(in_plane, in_plane, 2.0),
        slice_mm=2.0,
        kernel_mm=0.6,
        noise_hu=float(rng.uniform(9, 13)),
        enhancement=float(rng.uniform(0.92, 1.08)),
        storage="RAS",
        offset_mm=offset,  # type: ignore[arg-type]
    )


def image_phases(
    canvas: Canvas, acq: CTAcquisition, rng: np.random.Generator, phases: dict[str, int]
) -> dict[str, np.ndarray]:
    """One HU image per phase (`phases`: name -> the canvas property holding it; property
    0 is the non-contrast attenuation, from which enhancement is scaled)."""
    spacing = canvas.grid.spacing
    sigma = (
        acq.kernel_mm / spacing[0],
        acq.kernel_mm / spacing[1],
        acq.slice_mm / 2.355 / spacing[2],
    )
    plain = canvas.props[0]
    images = {}
    for name, index in phases.items():
        attenuation = plain + acq.enhancement * (canvas.props[index] - plain)
        image = gaussian_filter(attenuation, sigma=sigma)
        noise = gaussian_filter(rng.standard_normal(image.shape, dtype=np.float32), sigma=0.7)
        noise *= np.float32(acq.noise_hu / max(float(noise.std()), 1e-6))
        images[name] = np.clip(image + noise, *HU_RANGE).astype(np.float32)
    return images
