"""Preprocessing: one RAS grid whatever the input orientation, shape or obliquity."""

from __future__ import annotations

import numpy as np
from conftest import ball

from reportgen.io.study import Study, Volume
from reportgen.preprocessing import GridSpec, prepare_study

GRID = GridSpec(shape=(32, 32, 16), spacing=(4.0, 4.0, 4.0))


def _study(volumes: dict[str, Volume], mask: Volume | None = None) -> Study:
    return Study("s", volumes, "memory", "folder", lesion_mask=mask)


def _world_centroid(prepared, channel: int, threshold: float) -> np.ndarray:
    idx = np.argwhere(prepared.image[channel] > threshold).mean(axis=0)
    return (prepared.affine @ np.append(idx, 1.0))[:3]


def _body_and_lesion(shape=(48, 48, 24)) -> np.ndarray:
    """A body-sized block (so the grid centres on it) with a small bright off-centre ball."""
    data = np.zeros(shape, dtype=np.float32)
    data[4:-4, 4:-4, 2:-2] = 100.0
    lesion = ball(shape, centre=(30, 18, 14), radius=4, value=1.0, background=0.0) > 0
    data[lesion] = 1000.0
    return data


def test_lps_and_ras_storage_give_the_same_prepared_image():
    data = _body_and_lesion()
    ras_affine = np.diag([2.0, 2.0, 3.0, 1.0])
    # The same voxels stored with the first two axes reversed (LPS order on disk).
    lps_data = data[::-1, ::-1, :].copy()
    lps_affine = ras_affine.copy()
    lps_affine[0, 0] = lps_affine[1, 1] = -2.0
    lps_affine[0, 3] = 2.0 * (data.shape[0] - 1)
    lps_affine[1, 3] = 2.0 * (data.shape[1] - 1)
    a = prepare_study(_study({"T2W": Volume(data, ras_affine)}), GRID)
    b = prepare_study(_study({"T2W": Volume(lps_data, lps_affine)}), GRID)
    np.testing.assert_allclose(a.affine, b.affine)
    np.testing.assert_allclose(a.image, b.image, atol=1e-4)


def test_oblique_acquisition_lands_in_the_same_world_place():
    data = _body_and_lesion()
    straight = np.diag([2.0, 2.0, 3.0, 1.0])
    angle = np.deg2rad(20.0)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    oblique = straight.copy()
    oblique[:3, :3] = rot @ straight[:3, :3]
    lesion_world_straight = (straight @ np.array([30, 18, 14, 1.0]))[:3]
    lesion_world_oblique = (oblique @ np.array([30, 18, 14, 1.0]))[:3]
    prep = prepare_study(_study({"T2W": Volume(data, oblique)}), GRID)
    assert Volume(data, oblique).is_oblique and not Volume(data, straight).is_oblique
    found = _world_centroid(prep, 0, threshold=3.0)  # T2W scaled so the body is ~0.1, lesion ~1
    assert np.linalg.norm(found - lesion_world_oblique) < 4.0  # within one grid voxel
    assert np.linalg.norm(lesion_world_straight - lesion_world_oblique) > 4.0  # the test can tell


def test_sequences_of_different_shapes_are_aligned():
    fine = _body_and_lesion((48, 48, 24))
    coarse = fine[::2, ::2, ::2].copy()  # half the matrix, double the spacing: same field of view
    study = _study(
        {
            "T2W": Volume(fine, np.diag([2.0, 2.0, 3.0, 1.0])),
            "ADC": Volume(coarse, np.diag([4.0, 4.0, 6.0, 1.0])),
        }
    )
    prep = prepare_study(study, GRID)
    assert prep.sequences == ["T2W", "ADC"]
    assert "DWI" in prep.missing and not prep.present[1]
    t2 = _world_centroid(prep, 0, 3.0)
    adc = _world_centroid(prep, 2, 0.3)  # ADC scaled by its fixed physical range (1000/3000)
    assert np.linalg.norm(t2 - adc) < 4.0
    assert np.all(prep.image[1] == 0)  # a missing sequence stays empty, not invented


def test_dce_phases_share_the_pre_contrast_scale():
    base = _body_and_lesion()
    phases = {
        f"DCE_{t}": Volume(base * (1.0 + 0.5 * t), np.diag([2.0, 2.0, 3.0, 1.0])) for t in range(4)
    }
    prep = prepare_study(_study(phases), GRID)
    means = [prep.image[3 + t].mean() for t in range(4)]
    np.testing.assert_allclose(np.array(means) / means[0], [1.0, 1.5, 2.0, 2.5], rtol=1e-3)


def test_lesion_mask_keeps_integer_labels():
    data = _body_and_lesion()
    mask = np.zeros_like(data, dtype=np.float32)
    mask[26:35, 14:23, 11:18] = 1
    mask[8:14, 30:40, 4:9] = 2
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    prep = prepare_study(_study({"T2W": Volume(data, affine)}, mask=Volume(mask, affine)), GRID)
    assert prep.mask is not None and prep.mask.dtype == np.int16
    assert set(np.unique(prep.mask)) == {0, 1, 2}
