"""Reading image files defensively (NIfTI; NRRD and MetaImage through SimpleITK): every way
a file can be unusable becomes an InputError."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from reportgen.errors import InputError
from reportgen.io.sequences import IMAGE_SUFFIXES, ITK_SUFFIXES, TARGET_B
from reportgen.io.study import Volume

# A volume with more non-finite voxels than this is refused rather than patched.
MAX_NONFINITE_FRACTION = 0.05


def load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load voxel data (float32, scaling applied) and the affine; refuse what cannot be read."""
    if not path.exists():
        raise InputError(path, "no such file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise InputError(path, f"not a readable NIfTI file ({_reason(exc)})") from exc
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(path, f"expected NIfTI, found {type(image).__name__}")
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:  # truncated gzip, short file, bad dtype ...
        raise InputError(
            path, f"voxel data cannot be read, the file may be truncated ({_reason(exc)})"
        ) from exc
    affine = image.affine
    if (
        affine is None
        or not np.all(np.isfinite(affine))
        or abs(np.linalg.det(affine[:3, :3])) < 1e-9
    ):
        raise InputError(path, "the header's affine is missing or degenerate")
    return data, np.asarray(affine, dtype=np.float64)


def _load_itk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """NRRD / MetaImage through SimpleITK: voxels in (x, y, z[, t]) order and the RAS+ affine
    (ITK's physical space is LPS: x and y change sign)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(path, f"not a readable NRRD/MetaImage file ({_itk_reason(exc)})") from exc
    dim = image.GetDimension()
    if dim not in (3, 4):
        raise InputError(path, f"expected a 3D or 4D image, found {dim}D")
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    spatial = array.ndim - (1 if image.GetNumberOfComponentsPerPixel() > 1 else 0)
    order = list(range(spatial))[::-1] + list(range(spatial, array.ndim))
    data = np.transpose(array, order)  # ITK arrays are (z, y, x): back to (x, y, z[, ...])
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)[:3]
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)[:3]
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return data, affine


def _itk_reason(exc: Exception) -> str:
    """The last line of ITK's error text (its first is a source-file location)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last.split(": ", 1)[-1] if last.startswith("[") else last


def load_image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`load_nifti` for NIfTI, SimpleITK for NRRD and MetaImage; the same checks after."""
    if not path.name.lower().endswith(ITK_SUFFIXES):
        return load_nifti(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    data, affine = _load_itk(path)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(path, "the header's geometry is missing or degenerate")
    return data, affine


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


MIN_VOXELS_PER_AXIS = 4  # fewer is a few slices, not a volume to resample


def as_volume(
    data: np.ndarray, affine: np.ndarray, path: Path, what: str, warnings: list[str]
) -> Volume:
    """Check a 3D array is usable, patch a few non-finite voxels (and say so), wrap it."""
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(
            path, f"{what}: expected 3D data, found {data.ndim}D with shape {tuple(data.shape)}"
        )
    if min(data.shape) < 2:
        raise InputError(
            path, f"{what}: a single slice (shape {tuple(data.shape)}) is 2D data, not a volume"
        )
    if min(data.shape) < MIN_VOXELS_PER_AXIS:  # the anti-aliased resampling needs 4
        raise InputError(
            path,
            f"{what}: only {min(data.shape)} voxels along one axis (shape "
            f"{tuple(data.shape)}); a volume needs at least {MIN_VOXELS_PER_AXIS}",
        )
    finite = np.isfinite(data)
    if not finite.all():
        bad = int((~finite).sum())
        fraction = bad / data.size
        if fraction > MAX_NONFINITE_FRACTION:
            raise InputError(path, f"{what}: {fraction:.0%} of voxels are NaN or infinite")
        data = np.where(finite, data, 0.0).astype(np.float32)
        warnings.append(f"{path.name}: {what}: {bad} NaN/inf voxels set to 0")
    return Volume(
        data=np.ascontiguousarray(data, dtype=np.float32), affine=affine, source=str(path)
    )


def sidecar_path(path: Path) -> Path:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def read_json_object(path: Path) -> dict:
    """A JSON object from a file, or {} if the file does not exist."""
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, "not UTF-8 text") from exc
    if not isinstance(content, dict):
        raise InputError(path, "must hold a JSON object")
    return content


def read_sidecar(path: Path) -> dict:
    """The JSON sidecar next to a NIfTI file, or {} if there is none."""
    return read_json_object(sidecar_path(path))


def read_bvals(path: Path) -> list[float] | None:
    """FSL-style b-values next to a 4D diffusion file (``DWI.bval``), if present."""
    stem = sidecar_path(path).with_suffix("")
    bval = stem.with_name(stem.name + ".bval")
    if not bval.exists():
        return None
    try:
        return [float(v) for v in bval.read_text().split()]
    except ValueError as exc:
        raise InputError(bval, "b-values must be numbers separated by spaces") from exc


def select_diffusion_volume(
    data: np.ndarray, bvals: list[float], path: Path, target_b: float = TARGET_B
) -> tuple[np.ndarray, float]:
    """From a 4D diffusion series, keep the volume whose b-value is nearest the protocol's b."""
    if len(bvals) != data.shape[3]:
        raise InputError(
            path, f"{len(bvals)} b-values listed but the data has {data.shape[3]} volumes"
        )
    positive = [i for i, b in enumerate(bvals) if b > 0]
    if not positive:
        raise InputError(path, "diffusion series has no b>0 volume")
    best = min(positive, key=lambda i: (abs(bvals[i] - target_b), -bvals[i]))
    return data[..., best], bvals[best]
