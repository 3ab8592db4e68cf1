"""Write a phantom study as a hospital would export it: DICOM series and a report.txt.

Only what a hospital has leaves: the images (as classic MR DICOM, with the identifying
tags `dicom_factory` fills in) and the free-text report. The phantom's truth (report.json,
lesion mask) does not, so the own-data journey learns from parsed text alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from helpers.dicom_factory import write_series
from reportgen.io import load_study

SERIES = {  # sequence -> (description, number, extra tags)
    "T2W": ("t2_tse_tra", 2, {"ScanningSequence": "SE", "EchoTime": 100}),
    "DWI": ("ep2d_diff_tra", 3, {"DiffusionBValue": 800, "EchoTime": 70}),
    "ADC": ("ep2d_diff_tra_ADC", 4, {"ImageType": ["DERIVED", "PRIMARY", "ADC"]}),
}


def _lps(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple, tuple]:
    """A RAS-aligned volume as DICOM patient axes: (data, spacing, origin)."""
    spacing = tuple(float(abs(affine[i, i])) for i in range(3))
    nx, ny, _ = volume.shape
    corner = affine @ np.array([nx - 1, ny - 1, 0, 1.0])  # first voxel once x, y are flipped
    origin = (-float(corner[0]), -float(corner[1]), float(corner[2]))
    return volume[::-1, ::-1, :], spacing, origin


def write_phantom_export(study_dir: Path, text: str, out: Path) -> None:
    """`study_dir` (a synth study folder) as `out`/DICOM series + `out`/report.txt."""
    study = load_study(study_dir)
    study_uid, dce_uid = generate_uid(), generate_uid()
    dce = [n for n in study.sequences if n.startswith("DCE_")]
    dce_scale = 3000.0 / max(float(study.sequences[n].data.max()) for n in dce) if dce else 1.0
    for name, volume in study.sequences.items():
        data, spacing, origin = _lps(volume.data, volume.affine)
        if name == "ADC":
            scaled = data  # physical units (1e-6 mm^2/s) as scanners store them
        elif name in dce:
            scaled = data * dce_scale  # one scale for all phases: the curve survives
        else:
            scaled = data * (3000.0 / max(float(data.max()), 1e-6))
        pixels = np.clip(np.rint(scaled), 0, 32000).astype(np.int16)
        series_uid, offset = None, 0
        if name in dce:
            t = dce.index(name)
            description, number, folder = "t1_vibe_dyn", 5, "dce"
            series_uid, offset = dce_uid, t * pixels.shape[2]  # one series, phase after phase
            extra = {
                "TemporalPositionIdentifier": t + 1,
                "AcquisitionTime": f"11{t:02d}00",
                "ContrastBolusAgent": "" if t == 0 else "Gd",
                "FlipAngle": 12,
            }
        else:
            description, number, extra = SERIES[name]
            folder = name.lower()
        if "breast" in study_dir.name:
            extra = {**extra, "BodyPartExamined": "BREAST"}
        write_series(
            out / folder,
            pixels,
            spacing=spacing,
            origin_lps=origin,
            description=description,
            series_number=number,
            study_uid=study_uid,
            series_uid=series_uid,
            instance_offset=offset,
            extra=extra,
        )
    (out / "report.txt").write_text(text, encoding="utf-8")


def phantom_as_dicom(root: Path, domain: str = "breast", seed: int = 5) -> Path:
    """One phantom (under `root`/ph) exported as DICOM to `root`/dicom; returns that folder."""
    from reportgen.data import read_manifest
    from reportgen.synth import SynthOptions, synth_dataset

    synth_dataset(root / "ph", 1, SynthOptions(protocol="low_resolution", domain=domain, seed=seed))
    row = read_manifest(root / "ph")[0]
    write_phantom_export(root / "ph" / row["dir"], row["text"]["en"], root / "dicom")
    return root / "dicom"


CT_SERIES = {  # phase -> (description, number)
    "CT_PANC": ("Pancreas phase 1.0", 3),
    "CT_PV": ("Portal venous 1.0", 4),
}


def ct_phantom_as_dicom(root: Path, seed: int = 5) -> Path:
    """One pancreas CT phantom (under `root`/ph) with its two enhanced phases exported as
    CT DICOM series in HU to `root`/dicom (tagged ABDOMEN); returns that folder."""
    from reportgen.data import read_manifest
    from reportgen.synth import SynthOptions, synth_dataset

    synth_dataset(root / "ph", 1, SynthOptions(domain="pancreas", seed=seed))
    row = read_manifest(root / "ph")[0]
    study = load_study(root / "ph" / row["dir"])
    study_uid = generate_uid()
    for name, (description, number) in CT_SERIES.items():
        volume = study.sequences[name]
        data, spacing, origin = _lps(volume.data, volume.affine)
        write_series(
            root / "dicom" / name.lower(),
            np.rint(data).astype(np.int16),
            spacing=spacing,
            origin_lps=origin,
            description=description,
            series_number=number,
            study_uid=study_uid,
            extra={"BodyPartExamined": "ABDOMEN"},
            modality="CT",
        )
    return root / "dicom"
