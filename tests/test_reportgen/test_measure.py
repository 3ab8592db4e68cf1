"""Lesion geometry in world millimetres, whatever the voxel size or orientation."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.measure import measure_lesion
from reportgen.measure.breast import breast_position, clock_hour, find_landmarks
from reportgen.report.io import read_report
from reportgen.synth import SynthOptions, synth_dataset

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


# -- breast landmarks and position ------------------------------------------------------


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("measure")
    synth_dataset(
        folder,
        6,
        SynthOptions(protocol="low_resolution", domain="breast", seed=77, malignant_fraction=0.5),
        1,
    )
    return folder


def _lesions(folder, flip: bool = False):
    """(truth finding, mask, affine, T2W, T2W affine) per lesion; `flip` stores the images
    reversed along every axis (another orientation of the same world)."""
    for row in read_manifest(folder):
        study = load_study(folder / row["dir"])
        truth = read_report(folder / row["dir"] / "report.json")
        t2, mask = study.sequences["T2W"], study.lesion_mask
        t2_data, t2_affine = t2.data, t2.affine
        labels, affine = mask.data, mask.affine
        if flip:
            t2_data, t2_affine = _flipped(t2_data, t2_affine)
            labels, affine = _flipped(labels, affine)
        for number, finding in enumerate(truth.findings, start=1):
            if (labels == number).any():
                yield finding, labels == number, affine, t2_data, t2_affine


def _flipped(data, affine):
    out = affine.copy()
    for axis in range(3):
        out[:3, 3] += out[:3, axis] * (data.shape[axis] - 1)
        out[:3, axis] *= -1
    return data[::-1, ::-1, ::-1].copy(), out


@pytest.mark.parametrize("flip", [False, True])
def test_side_and_clock_face_are_read_from_the_mask_and_landmarks(phantoms, flip):
    seen = 0
    for finding, mask, affine, t2, t2_affine in _lesions(phantoms, flip):
        marks = find_landmarks(t2, t2_affine)
        position = breast_position(measure_lesion(mask, affine).centre_mm, marks)
        assert position.laterality == finding.fields["laterality"].value
        assert f"clock_{position.clock_hour}" == finding.fields["clock"].value
        assert position.nipple_distance_mm > 0
        seen += 1
    assert seen >= 3


def test_the_chest_wall_is_behind_the_breast_fat_not_at_a_grey_front():
    # a slab body on 1 mm voxels, posterior to anterior (+y): muscle (dark), breast fat
    # (bright), then 10 mm of mid-grey skin and dense tissue at the front, darker than
    # the wall's level: the wall is where the muscle starts, not at the nipple
    image = np.zeros((60, 90, 30), np.float32)
    image[:, 0:20] = 0.25  # muscle
    image[:, 20:60] = 1.0  # fat
    image[:, 60:70] = 0.38  # skin, nipple, dense tissue
    marks = find_landmarks(image, np.eye(4))
    for side in ("right", "left"):
        assert marks.nipples_mm[side][1] == 69
        assert abs(marks.chest_wall_y_mm[side] - 19) <= 2
    position = breast_position((45.0, 44.0, 15.0), marks)
    assert 0.4 < position.depth_fraction < 0.6


def test_clock_faces_as_seen_facing_the_patient():
    assert clock_hour(0.0, 10.0) == 12  # superior
    assert clock_hour(-10.0, 0.0) == 3  # towards the patient's left (-x in RAS)
    assert clock_hour(0.0, -10.0) == 6
    assert clock_hour(10.0, 0.0) == 9
    assert clock_hour(-5.0, 8.66) == 1


def _grid(n: int = 32) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1) - n // 2


def test_form_tells_round_from_oval_from_irregular():
    from reportgen.measure.morphology import lesion_form

    g = _grid()
    ball = np.linalg.norm(g, axis=-1) <= 8
    oval = ((g / np.array([10, 5, 6])) ** 2).sum(-1) <= 1
    angle = np.arctan2(g[..., 1], g[..., 0])
    lobed = np.linalg.norm(g, axis=-1) <= 8 * (1 + 0.35 * np.cos(5 * angle))
    round_, oval_, lobed_ = (lesion_form(m) for m in (ball, oval, lobed))
    assert round_.elongation > 0.95 and oval_.elongation < 0.7
    assert lobed_.solidity < round_.solidity - 0.1
    assert lobed_.sphericity < round_.sphericity


def test_enhancement_pattern_sees_a_rim_and_spicules():
    from reportgen.measure.morphology import lesion_pattern

    g = _grid()
    r = np.linalg.norm(g, axis=-1)
    ball = r <= 8
    pre = np.ones(r.shape)
    solid = np.where(ball, 2.0, 1.0)
    rim = np.where(ball & (r > 5.5), 2.0, np.where(ball, 1.2, 1.0))
    spiky = solid.copy()
    for axis in range(3):
        for sign in (1, -1):
            index = [16, 16, 16]
            for t in range(9, 13):
                index[axis] = 16 + sign * t
                spiky[tuple(index)] = 2.0
    plain = lesion_pattern(ball, [pre, solid])
    ringed = lesion_pattern(ball, [pre, rim])
    spiculated = lesion_pattern(ball, [pre, spiky])
    assert plain.enhancement_cv < 0.01 and ringed.enhancement_cv > 0.2
    assert ringed.rim_over_core > 1.3 and abs(plain.rim_over_core - 1) < 1e-6
    assert ringed.weak_fraction > 0.2 and plain.weak_fraction == 0
    assert spiculated.peri_enhancing > plain.peri_enhancing
    assert lesion_pattern(ball, [pre]) is None  # no post-contrast phase: nothing to say


def test_lateral_side_is_where_tissue_lies_beyond_the_primary():
    """A cervical tumour's extension beyond 12 mm of the primary's centre gives the side
    of parametrial invasion (RAS: x grows to the patient's right); both sides with a
    quarter each are bilateral; tissue only near the centre gives no side."""
    from reportgen.measure import lateral_side

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-40.0, -40.0, -40.0)  # voxel 20 is x = 0
    mask = np.zeros((41, 41, 41), bool)
    mask[18:23, 18:23, 18:23] = True  # within 4 mm of the centre: no side
    assert lateral_side(mask, affine, 0.0) is None
    assert lateral_side(np.zeros_like(mask), affine, 0.0) is None
    right = mask.copy()
    right[27:33, 19:22, 19:22] = True  # x = 14..24 mm
    assert lateral_side(right, affine, 0.0) == "right"
    assert lateral_side(right, affine, 30.0) == "left"  # the primary sits further right
    both = right.copy()
    both[9:13, 19:22, 19:22] = True  # x = -22..-16 mm: 4 of 10 columns' worth
    assert lateral_side(both, affine, 0.0) == "bilateral"
    both[9:12, 19:22, 19:22] = False  # one column left: under a quarter
    assert lateral_side(both, affine, 0.0) == "right"


def test_node_parts_are_outlined_nodes_of_a_suspicious_size_with_their_short_axis():
    """Parts under 8 mm across are not nodes; a node's short axis is 0.95 of its
    equivalent-sphere diameter; sides are relative to the midline."""
    from reportgen.measure import node_parts, sides_of

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-60.0, -60.0, -60.0)
    grid = np.indices((61, 61, 61)).transpose(1, 2, 3, 0) * 2.0 - 60.0
    node = np.linalg.norm(grid - (40.0, 0.0, 0.0), axis=-1) <= 8.0  # 16 mm, patient's right
    speck = np.linalg.norm(grid - (-40.0, 0.0, 0.0), axis=-1) <= 2.0  # under 8 mm across
    [part] = node_parts(node | speck, affine)
    assert part.centre_mm[0] == pytest.approx(40.0, abs=0.5)
    assert part.short_axis_mm == pytest.approx(0.95 * 16.0, abs=1.0)
    assert sides_of([part.centre_mm[0]], 0.0) == "right"
    assert sides_of([40.0, -35.0], 0.0) == "bilateral" and sides_of([], 0.0) is None
    assert sides_of([40.0], 45.0) == "left"


def _duct_along_x(radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A straight duct of this radius on the pancreas reader's 1 x 1 x 2 mm grid, and
    the grid's affine."""
    spacing = np.array([1.0, 1.0, 2.0])
    world = np.indices((60, 30, 15)).transpose(1, 2, 3, 0) * spacing
    return np.hypot(world[..., 1] - 15.0, world[..., 2] - 14.0) <= radius_mm, np.diag(
        [*spacing, 1.0]
    )


def test_a_normal_duct_with_one_wide_voxel_is_not_read_dilated():
    from reportgen.measure.pancreas import _duct_width_mm, _widest_mm
    from reportgen.model.pancreas_reading import DUCT_DILATED_MM

    normal, affine = _duct_along_x(1.5)
    spacing = np.diag(affine)[:3]
    bulge = normal.copy()
    bulge[30:32, 13:18, 6:9] = True  # one spot where a voxel's diagonal lies across it
    assert _widest_mm(bulge, spacing) > DUCT_DILATED_MM  # the single widest point
    assert _duct_width_mm(bulge, affine) <= DUCT_DILATED_MM  # the duct along its course
    dilated, _ = _duct_along_x(3.0)
    assert _duct_width_mm(dilated, affine) > 5.0
