"""Readers for the image-file study forms (NIfTI, NRRD, MetaImage): a study folder, a single
3D file, a 4D file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reportgen.errors import InputError
from reportgen.io.dicom_headers import TECHNICAL_TAGS
from reportgen.io.nifti import (
    as_volume,
    load_image,
    read_bvals,
    read_json_object,
    read_sidecar,
    select_diffusion_volume,
    sidecar_path,
)
from reportgen.io.sequences import (
    canonical_sequence_name,
    is_image_file,
    is_mask_name,
    sequence_from_filename,
    strip_nifti_suffix,
)
from reportgen.io.study import Study, Volume, pseudonymous_name_id


def _named(name: str | None, path: Path, origin: str) -> str:
    canonical = canonical_sequence_name(name) if name else None
    if name and not canonical:
        raise InputError(
            path, f"unknown sequence name {name!r} in {origin}; expected T2W, DWI, ADC or DCE_<n>"
        )
    assert canonical is not None
    return canonical


def _sidecar_sequence(path: Path, sidecar: dict) -> str | None:
    """The sequence a per-file sidecar names, refusing sidecars written for 4D files."""
    if "sequences" in sidecar:
        listed = sidecar["sequences"]
        raise InputError(
            sidecar_path(path),
            f"sidecar lists {len(listed) if isinstance(listed, list) else '?'} sequences but the file holds one 3D volume",
        )
    value = sidecar.get("sequence") or sidecar.get("Sequence")
    return _named(str(value), sidecar_path(path), "sidecar") if value else None


def _diffusion_3d(
    data: np.ndarray, path: Path, name: str, warnings: list[str], metadata: dict
) -> np.ndarray:
    """A DWI file may be 4D (b0 + b800 ...): keep the protocol's b-value volume."""
    if data.ndim == 4 and data.shape[3] > 1 and name == "DWI":
        bvals = read_bvals(path) or read_sidecar(path).get("bvals")
        if not bvals:
            raise InputError(
                path,
                f"4D diffusion file with {data.shape[3]} volumes needs b-values (DWI.bval or 'bvals' in its sidecar)",
            )
        data, b = select_diffusion_volume(data, [float(b) for b in bvals], path)
        metadata.setdefault("b_value", {})[name] = b
        warnings.append(f"{path.name}: using the b={b:g} volume of {len(bvals)}")
    return data


def read_study_folder(folder: Path, study_id: str | None = None) -> Study:
    """A folder of per-sequence NIfTI files (plain or BIDS-like names) and an optional mask."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise InputError(folder, "folder holds no NIfTI files (.nii or .nii.gz)")
    study_meta = read_json_object(folder / "study.json")
    warnings: list[str] = []
    metadata: dict = {}
    sequences: dict[str, Volume] = {}
    mask: Volume | None = None
    ignored: list[str] = []
    for path in files:
        stem = strip_nifti_suffix(path.name)
        sidecar = read_sidecar(path)
        from_sidecar = _sidecar_sequence(path, sidecar)
        from_name = sequence_from_filename(path.name)
        if from_sidecar and from_name and from_sidecar != from_name:
            raise InputError(
                sidecar_path(path),
                f"sidecar says {from_sidecar} but the file name says {from_name}",
            )
        name = from_sidecar or from_name
        if name is None and is_mask_name(stem):
            if mask is not None:
                raise InputError(
                    path,
                    f"two lesion masks in one folder ({Path(mask.source).name} and {path.name})",
                )
            data, affine = load_image(path)
            mask = as_volume(np.rint(data), affine, path, "lesion mask", warnings)
            continue
        if name is None:
            ignored.append(path.name)
            continue
        if name in sequences:
            raise InputError(
                folder,
                f"two files hold {name}: {Path(sequences[name].source).name} and {path.name}",
            )
        data, affine = load_image(path)
        data = _diffusion_3d(data, path, name, warnings, metadata)
        sequences[name] = as_volume(data, affine, path, name, warnings)
        technical = {k: sidecar[k] for k in TECHNICAL_TAGS if k in sidecar}
        if technical:  # what ingest kept of the headers: a draft's technique
            metadata.setdefault("acquisition", {})[name] = technical
    if not sequences:
        raise InputError(
            folder,
            f"no file is named as an MRI sequence (found: {', '.join(p.name for p in files)})",
        )
    if ignored:
        warnings.append(f"ignored files that name no known sequence: {', '.join(ignored)}")
    if isinstance(study_meta.get("dce_phases"), str):  # written by ingest from a long dynamic
        metadata["dce_phases"] = study_meta["dce_phases"]
    if isinstance(study_meta.get("dce_timing"), dict):  # ingest: phases after injection
        metadata["dce_timing"] = study_meta["dce_timing"]
    if isinstance(study_meta.get("body_part"), str):  # ingest keeps the DICOM region
        metadata["body_part"] = study_meta["body_part"].strip().upper()
    return Study(
        study_id=str(study_meta.get("study_id") or study_id or pseudonymous_name_id(folder.name)),
        sequences=sequences,
        source=str(folder),
        form="folder",
        lesion_mask=mask,
        warnings=warnings,
        metadata=metadata,
    )


def looks_like_hounsfield(data: np.ndarray) -> bool:
    """Whether an unnamed volume's values are a CT's (a tenth of it at or below -500 HU,
    air and lung, which no MRI magnitude has): only said in a hint, never used to name."""
    sample = np.asarray(data[::4, ::4, ::4], dtype=np.float32)
    return bool(sample.size) and float((sample <= -500).mean()) > 0.1


def read_nifti_file(
    path: Path, sequence: str | None = None, sequences: list[str] | None = None
) -> Study:
    """A single NIfTI file: 3D (one sequence) or 4D whose last axis is sequences."""
    data, affine = load_image(path)
    sidecar = read_sidecar(path)
    warnings: list[str] = []
    study_id = str(sidecar.get("study_id") or pseudonymous_name_id(strip_nifti_suffix(path.name)))
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 3:
        name = (
            _named(sequence, path, "--sequence")
            if sequence
            else _sidecar_sequence(path, sidecar) or sequence_from_filename(path.name)
        )
        if name is None:
            if looks_like_hounsfield(data):
                raise InputError(
                    path,
                    "values look like a CT in Hounsfield units (air near -1000): name its "
                    "phase with --sequence CT_PV, CT_PANC, CT_NC or CT (phase unknown), or a "
                    'JSON sidecar {"sequence": "CT_PV"}',
                )
            raise InputError(
                path,
                'cannot tell which sequence this 3D file holds; name it with --sequence T2W or a JSON sidecar {"sequence": "T2W"}',
            )
        volume = as_volume(data, affine, path, name, warnings)
        return Study(study_id, {name: volume}, str(path), "nifti3d", warnings=warnings)
    if data.ndim == 4:
        names = sequences or sidecar.get("sequences")
        if not names:
            raise InputError(
                path,
                f"4D file with {data.shape[3]} volumes needs a sidecar naming them, e.g. {sidecar_path(path).name}: "
                '{"sequences": ["T2W", "ADC", "DCE_0", "DCE_1"]}',
            )
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(sidecar_path(path), "'sequences' must be a list of names")
        if len(names) != data.shape[3]:
            raise InputError(
                sidecar_path(path),
                f"sidecar lists {len(names)} sequences but the data has {data.shape[3]} volumes",
            )
        canonical = [_named(n, sidecar_path(path), "sidecar") for n in names]
        if len(set(canonical)) != len(canonical):
            raise InputError(sidecar_path(path), f"sidecar names a sequence twice: {names}")
        vols = {
            c: as_volume(data[..., i], affine, path, c, warnings) for i, c in enumerate(canonical)
        }
        mask = None
        mask_file = sidecar.get("lesion_mask")
        if mask_file:
            mask_path = (path.parent / str(mask_file)).resolve()
            m_data, m_affine = load_image(mask_path)
            mask = as_volume(np.rint(m_data), m_affine, mask_path, "lesion mask", warnings)
        return Study(study_id, vols, str(path), "nifti4d", lesion_mask=mask, warnings=warnings)
    raise InputError(
        path, f"expected 3D or 4D data, found {data.ndim}D with shape {tuple(data.shape)}"
    )
