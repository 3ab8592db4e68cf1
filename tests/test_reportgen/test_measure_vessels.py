"""Tumour-vessel contact measured from outlines agrees with the geometry that made them."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.measure.vessels import vessel_contact

SHAPE = (70, 70, 60)


def _grid(spacing: float) -> tuple[np.ndarray, np.ndarray]:
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -np.asarray(SHAPE) * spacing / 2
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    return idx * spacing + affine[:3, 3], affine


@pytest.mark.parametrize("spacing", [1.0, 1.6])
@pytest.mark.parametrize(
    ("centre_x", "radius", "low", "high"),
    [(0.0, 15.0, 330.0, 360.0), (30.0, 12.0, 0.0, 0.0), (60.0, 60.0, 130.0, 230.0)],
)
def test_contact_degrees_follow_the_painted_geometry(spacing, centre_x, radius, low, high):
    world, affine = _grid(spacing)
    vessel = np.hypot(world[..., 0], world[..., 1]) <= 5.0
    tumour = np.linalg.norm(world - [centre_x, 0.0, 0.0], axis=-1) <= radius
    tumour &= ~vessel  # the vessel stays patent inside the tumour
    contact = vessel_contact(vessel, tumour, affine)
    assert low <= contact.degrees <= high, contact
    assert contact.vessel_parts == 1 and contact.radius_mm == pytest.approx(5.0, abs=1.5)


def test_an_occluded_vessel_is_two_parts_with_the_gap_between():
    world, affine = _grid(1.0)
    vessel = (np.hypot(world[..., 0], world[..., 1]) <= 5.0) & (np.abs(world[..., 2]) > 10.0)
    tumour = np.linalg.norm(world, axis=-1) <= 14.0
    contact = vessel_contact(vessel, tumour, affine)
    assert contact.vessel_parts == 2
    assert contact.gap_mm == pytest.approx(20.0, abs=2.5)
