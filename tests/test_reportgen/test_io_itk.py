"""NRRD and MetaImage (3D Slicer, ITK-SNAP) read like NIfTI: same voxels, same world position."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import assert_refused, save_nifti

from reportgen.io import load_study
from reportgen.io.study import pseudonymous_name_id

# a flipped, rotated, anisotropic grid: the axes cannot line up by accident
AFFINE = np.array(
    [
        [-0.0, 0.0, 3.0, -40.0],
        [-1.8, 0.0, 0.0, 55.0],
        [0.0, -1.2, 0.0, 12.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def marked(shape=(12, 10, 8), at=(3, 7, 5)) -> np.ndarray:
    data = np.zeros(shape, np.float32) + 10
    data[at] = 900
    return data


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_an_itk_file_holds_the_same_voxels_at_the_same_world_position(tmp_path, suffix):
    nifti = tmp_path / "T2W.nii.gz"
    save_nifti(nifti, marked(), AFFINE)
    converted = tmp_path / "itk" / f"T2W{suffix}"
    converted.parent.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(converted))
    reference = load_study(nifti).sequences["T2W"]
    study = load_study(converted)
    volume = study.sequences["T2W"]
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-4)
    np.testing.assert_array_equal(volume.data, reference.data)
    world = volume.affine @ np.append(np.argwhere(volume.data == 900)[0], 1.0)
    np.testing.assert_allclose(world, AFFINE @ np.array([3, 7, 5, 1.0]), atol=1e-4)
    assert study.study_id == pseudonymous_name_id("T2W")  # a name is never the id


def test_a_study_folder_may_mix_nifti_nrrd_and_metaimage(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    save_nifti(folder / "T2W.nii.gz", marked(), AFFINE)
    for name, suffix in (("ADC", ".nrrd"), ("DWI", ".mha")):
        save_nifti(tmp_path / f"{name}.nii.gz", marked(), AFFINE)
        sitk.WriteImage(
            sitk.ReadImage(str(tmp_path / f"{name}.nii.gz")), str(folder / f"{name}{suffix}")
        )
    study = load_study(folder)
    assert {"T2W", "DWI", "ADC"} <= set(study.sequences)
    np.testing.assert_allclose(
        study.sequences["ADC"].affine, study.sequences["T2W"].affine, atol=1e-4
    )


def test_a_corrupt_nrrd_is_refused_in_one_line(tmp_path, cli):
    bad = tmp_path / "T2W.nrrd"
    bad.write_bytes(
        b"NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n" + b"\0" * 17
    )
    assert_refused(cli("inspect", bad), "T2W.nrrd", "not a readable NRRD")
