"""Lesion geometry in world millimetres, whatever the voxel size or orientation."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.measure import measure_lesion

SEMI_AXES = np.array([15.0, 10.0, 6.0])  # mm: a 30 x 20 x 12 mm ellipsoid
CENTRE = np.array([12.0, -30.0, 5.0])  # world mm


def _ellipsoid(spacing, rotation_deg: float = 0.0, shape=(96, 96, 48)):
    """An ellipsoid mask on a grid with this spacing, rotated about S-I in world space."""
    theta = np.deg2rad(rotation_deg)
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    grid_centre = (np.array(shape) - 1) / 2
    affine[:3, 3] = CENTRE - affine[:3, :3] @ grid_centre
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    local = (world - CENTRE) @ rot  # back into the ellipsoid's own axes
    inside = ((local / SEMI_AXES) ** 2).sum(-1) <= 1.0
    return inside, affine


@pytest.mark.parametrize(
    ("spacing", "rotation"),
    [((1.0, 1.0, 1.0), 0.0), ((0.7, 0.7, 3.0), 0.0), ((1.0, 1.0, 2.0), 30.0)],
)
def test_size_and_centre_do_not_depend_on_voxels_or_orientation(spacing, rotation):
    mask, affine = _ellipsoid(spacing, rotation)
    g = measure_lesion(mask, affine)
    voxel = max(spacing)
    assert g.longest_diameter_mm == pytest.approx(30.0, abs=voxel + 0.5)
    assert g.axial_longest_diameter_mm == pytest.approx(30.0, abs=voxel + 0.5)
    assert np.allclose(g.centre_mm, CENTRE, atol=0.5)
    assert g.volume_ml == pytest.approx(4 / 3 * np.pi * SEMI_AXES.prod() / 1000, rel=0.08)
    if rotation == 0.0:
        assert np.allclose(g.extent_mm, 2 * SEMI_AXES, atol=voxel + 0.5)


def test_the_axial_diameter_ignores_the_slice_thickness():
    mask = np.zeros((10, 10, 10), bool)
    mask[5, 5, 2:8] = True  # a 1 mm-wide rod, 6 slices of 3 mm along S-I
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    g = measure_lesion(mask, affine)
    assert g.longest_diameter_mm == pytest.approx(np.sqrt(2 + 18**2), abs=0.01)
    assert g.axial_longest_diameter_mm == pytest.approx(np.sqrt(2), abs=0.01)


def test_an_empty_mask_is_refused():
    with pytest.raises(ValueError, match="at least one voxel"):
        measure_lesion(np.zeros((4, 4, 4), bool), np.eye(4))
