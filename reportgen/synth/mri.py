"""From tissue property maps to MR images, with the artefacts real images have."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter, gaussian_filter1d

from reportgen.io.write import nifti_image, save_nifti
from reportgen.synth.acquisition import Acquisition
from reportgen.synth.scene import PROPS, Canvas, Grid, smooth_noise

DCE_PHASES = 4  # pre-contrast + 3 post-contrast phases (early, intermediate, late)


def _bias_field(
    rng: np.random.Generator, shape: tuple[int, ...], amplitude: float, scale: float = 0.0
) -> np.ndarray:
    """A smooth multiplicative receive-coil field around 1 (`scale` in voxels; 0: half the
    largest dimension of `shape`)."""
    field = smooth_noise(rng, shape, scale=scale or max(shape) / 2.0)
    return (1.0 + amplitude * (2.0 * field - 1.0)).astype(np.float32)


def _rician(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    noise = rng.standard_normal((2, *image.shape), dtype=np.float32)
    noise *= np.float32(sigma)
    noise[0] += image
    np.square(noise, out=noise)
    return np.sqrt(noise[0] + noise[1])


def _motion(image: np.ndarray, sigma: float, rng: np.random.Generator, severe: bool) -> np.ndarray:
    if severe:  # ghosting along phase-encode plus heavy blur: a non-diagnostic series
        ghost = np.roll(image, image.shape[1] // 4, axis=1) * 0.35
        return gaussian_filter1d(image + ghost, sigma=3.0, axis=1)
    return gaussian_filter1d(image, sigma=sigma, axis=1) if sigma > 0.05 else image


def synthesise_sequences(
    canvas: Canvas, acq: Acquisition, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Image every protocol sequence from the property maps."""
    p = {name: canvas.props[i] for i, name in enumerate(PROPS)}
    bias = _bias_field(rng, canvas.grid.shape, acq.bias, acq.bias_scale)
    motion = acq.motion * acq.texture_scale  # blur in voxels of the painted grid
    enhancement = [np.zeros_like(p["e1"]), p["e1"], p["e2"], p["e3"]]
    clean = {
        "T2W": p["t2"] ** acq.t2_contrast,
        "DWI": p["s0"] * np.exp(-acq.b_value * p["adc"] * 1e-6),
        **{f"DCE_{k}": p["t1"] * (1.0 + enhancement[k]) for k in range(DCE_PHASES)},
    }
    images: dict[str, np.ndarray] = {}
    for name, image in clean.items():
        sigma = acq.noise * (0.5 if name == "DWI" else 1.0)
        blurred = _motion(image * bias, motion, rng, acq.severe_motion)
        images[name] = _rician(rng, blurred, sigma).astype(np.float32)
    # ADC map: noisy where diffusion signal is weak (fat-suppressed fat, air), as scanners compute it.
    adc = p["adc"] + np.float32(40.0) * rng.standard_normal(p["adc"].shape, dtype=np.float32)
    weak = p["s0"] < 0.08
    adc[weak] = rng.uniform(0, 400, int(weak.sum())).astype(np.float32)
    images["ADC"] = np.clip(_motion(adc, motion, rng, acq.severe_motion), 0, 4000).astype(
        np.float32
    )
    return {
        name: images[name]
        for name in ("T2W", "DWI", "ADC", *[f"DCE_{k}" for k in range(DCE_PHASES)])
    }


def acquire_series(
    images: dict[str, np.ndarray], painted: Grid, acq: Acquisition
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each series on its own grid (`Acquisition.series_grid`): (image, affine). A series
    with coarser voxels than the painted grid integrates the signal over each of its
    voxels: a Gaussian of the voxel ratio's width (FWHM one target voxel), then linear
    interpolation at the voxel centres. On the low-resolution protocol every series is
    the painted grid, unchanged."""
    out = {}
    for name, image in images.items():
        grid = acq.series_grid(name)
        if grid.shape == painted.shape and np.allclose(grid.affine, painted.affine):
            out[name] = (image, painted.affine)
            continue
        to_painted = np.linalg.inv(painted.affine) @ grid.affine
        ratio = np.sqrt((to_painted[:3, :3] ** 2).sum(axis=0))  # painted voxels per voxel
        sigma = np.where(ratio > 1.0, ratio / 2.355, 0.0)
        smooth = gaussian_filter(image, sigma=sigma) if np.any(sigma > 0) else image
        resampled = affine_transform(
            smooth,
            to_painted[:3, :3],
            offset=to_painted[:3, 3],
            output_shape=grid.shape,
            order=1,
            mode="nearest",
        )
        out[name] = (resampled.astype(np.float32), grid.affine)
    return out


def save_int16(data: np.ndarray, affine: np.ndarray, path: Path, *, physical: bool = False) -> None:
    """Store as int16 like scanners do: ADC in 1e-6 mm^2/s directly, others scaled (scl_slope)."""
    if physical:
        image = nifti_image(np.rint(data).astype(np.int16), affine)
    else:
        image = nifti_image(data.astype(np.float32), affine, dtype=np.int16)
    save_nifti(image, path)
