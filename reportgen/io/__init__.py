"""Study input: study folders, 3D/4D NIfTI files and DICOM folders become a `Study`."""

from __future__ import annotations

from pathlib import Path

from reportgen.errors import InputError
from reportgen.io.readers import read_nifti_file, read_study_folder
from reportgen.io.sequences import PROTOCOL, canonical_sequence_name, is_image_file
from reportgen.io.study import Study, Volume

__all__ = ["PROTOCOL", "Study", "Volume", "canonical_sequence_name", "load_study"]


SIDECAR_SUFFIXES = (".json", ".bval", ".bvec", ".txt", ".md", ".csv", ".tsv")


def _refuse_dicom_beside_images(folder: Path, tries: int = 50) -> None:
    """A folder holding images and DICOM files would be read as its images alone, its
    DICOM (and the BodyPartExamined in it) silently ignored: refuse the mix instead."""
    others = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not is_image_file(p) and not p.name.endswith(SIDECAR_SUFFIXES)
    ][:tries]
    if not others:
        return
    from reportgen.io.dicom import holds_dicom  # imported lazily: pydicom + dicom2nifti

    if holds_dicom(others):
        raise InputError(
            folder,
            "holds both images (NIfTI/NRRD/MetaImage) and DICOM files; give a folder with "
            "one or the other (move the DICOM series, or the images, to a folder of their own)",
        )


def load_study(
    path: str | Path, sequence: str | None = None, sequences: list[str] | None = None
) -> Study:
    """Read a study from any supported form; refuse with an InputError what cannot be read."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_file():
        if is_image_file(path):
            return read_nifti_file(path, sequence=sequence, sequences=sequences)
        raise InputError(
            path, "not an image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd) or a folder"
        )
    if not any(path.iterdir()):
        raise InputError(path, "folder is empty")
    if any(is_image_file(p) for p in path.iterdir() if p.is_file()):
        _refuse_dicom_beside_images(path)
        return read_study_folder(path)
    from reportgen.io.dicom import read_dicom_study  # imported lazily: pydicom + dicom2nifti

    return read_dicom_study(path)
