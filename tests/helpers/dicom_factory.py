"""Write small classic MR (or CT) DICOM series with known geometry, for loader tests.

Volumes are given as numpy arrays indexed [column, row, slice] in DICOM patient (LPS)
axes: column i runs along +x (patient left), row j along +y (posterior), slice k along
+z (superior). Identifying tags are filled with recognisable values so tests can check
that none of them leaves `reportgen ingest`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

IDENTIFIERS = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-0042-SECRET",
    "PatientBirthDate": "19610214",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "AccessionNumber": "ACC778899",
    "StudyDate": "20240131",
}


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (2.0, 2.0, 3.0),
    origin_lps: tuple[float, float, float] = (-60.0, -60.0, -40.0),
    description: str = "t2_tse_tra",
    series_number: int = 1,
    study_uid: str | None = None,
    extra: dict | None = None,
    per_slice_extra: list[dict] | None = None,
    series_uid: str | None = None,
    instance_offset: int = 0,
    modality: str = "MR",
) -> str:
    """Write `volume` (int16-able) as one axial series; returns its SeriesInstanceUID. A
    CT (`modality="CT"`) stores HU as they are (rescale slope 1, intercept 0)."""
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or "1.2.826.0.1.3680043.8.498.1"
    cols, rows, slices = volume.shape
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        for key, value in IDENTIFIERS.items():
            setattr(ds, key, value)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid])  # one per study
        ds.Modality = modality
        ds.Manufacturer = "ACME Imaging"
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = instance_offset + k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin_lps[0], origin_lps[1], origin_lps[2] + k * spacing[2]]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing, column spacing
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        if modality == "CT":
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "HU"
            ds.KVP = 120
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        else:
            ds.RepetitionTime = 4000
            ds.EchoTime = 90
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        for key, value in (per_slice_extra[k] if per_slice_extra else {}).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype("<i2")).tobytes()
        ds.save_as(
            folder / f"s{series_number:03d}_{instance_offset + k:04d}.dcm", enforce_file_format=True
        )
    return series_uid


def marker_volume(
    shape: tuple[int, int, int], marker: tuple[int, int, int], base: int = 100, peak: int = 2000
) -> np.ndarray:
    """A flat volume with one bright voxel, to check where a converter puts it in the world."""
    volume = np.full(shape, base, dtype=np.int16)
    volume[marker] = peak
    return volume


def write_marker_dynamic(
    folder: Path,
    phases: int,
    shape: tuple[int, int, int],
    marker: tuple[int, int, int],
    series_uid: str,
    extra: dict | None = None,
) -> None:
    """A dynamic series of `phases` phases 10 s apart, whose marker voxel brightens by 10
    per phase (peak 300 + 10 t): which phase was chosen shows in the converted volume."""
    for t in range(phases):
        seconds = 10 * t
        write_series(
            folder,
            marker_volume(shape, marker, base=200, peak=300 + 10 * t),
            description="fl3d_vibe_dynamic",
            series_number=20,
            series_uid=series_uid,
            instance_offset=t * shape[2],
            extra={
                "FlipAngle": 12,
                "TemporalPositionIdentifier": t + 1,
                "AcquisitionTime": f"12{seconds // 60:02d}{seconds % 60:02d}.000",
                **(extra or {}),
            },
        )
