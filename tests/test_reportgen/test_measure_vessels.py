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


def _portal_channel(world: np.ndarray, cut: tuple[float, float]) -> dict[str, np.ndarray]:
    """A vertical SMV up to the confluence at z = 0, the portal vein on above it, the
    splenic vein joining from the patient's left there; the channel missing over `cut`."""
    tube = np.hypot(world[..., 0], world[..., 1]) <= 5.0
    gone = (world[..., 2] > cut[0]) & (world[..., 2] < cut[1])
    splenic = (np.hypot(world[..., 1], world[..., 2]) <= 4.0) & (world[..., 0] > 5.0)
    return {
        "superior_mesenteric_vein": tube & (world[..., 2] < 0.0) & ~gone,
        "portal_vein": tube & (world[..., 2] >= 0.0) & ~gone,
        "splenic_vein": splenic,
    }


@pytest.mark.parametrize(
    ("cut", "occluded"),
    [
        ((-22.0, -8.0), "superior_mesenteric_vein"),  # within the SMV
        ((-20.0, 3.0), "superior_mesenteric_vein"),  # mostly SMV, across the confluence
        ((-3.0, 18.0), "portal_vein"),  # mostly portal vein
    ],
)
def test_an_occlusion_belongs_to_the_vein_whose_stretch_the_tumour_replaced(cut, occluded):
    """The SMV and portal vein are one channel: a tumour across their confluence leaves
    each vein's own outline whole, yet the channel is cut, and the vein that lost the
    longer stretch is the occluded one."""
    from reportgen.measure.pancreas import occluded_vein

    world, affine = _grid(1.0)
    outline = _portal_channel(world, cut)
    middle = (cut[0] + cut[1]) / 2.0
    tumour = np.linalg.norm(world - [0.0, 0.0, middle], axis=-1) <= (cut[1] - cut[0]) / 2 + 6.0
    empty = np.zeros(SHAPE, bool)
    assert occluded_vein(outline, empty, tumour, affine).vein == occluded
    elsewhere = np.linalg.norm(world - [20.0, 20.0, 20.0], axis=-1) <= 5.0  # beside no gap
    assert occluded_vein(outline, empty, elsewhere, affine) is None


def test_a_stump_buried_in_the_tumour_is_no_cross_section():
    """A vein stopping inside a tumour (beside an occlusion) is ringed by tumour at its
    end cap, which no radiologist reads as encasement: given its stump, only its own
    cross-sections are read."""
    world, affine = _grid(1.0)
    vein = (np.hypot(world[..., 0], world[..., 1]) <= 5.0) & (world[..., 2] < 0.0)
    cap = (np.hypot(world[..., 0], world[..., 1]) <= 12.0) & (np.abs(world[..., 2] + 1.0) < 7.0)
    cap &= ~vein
    assert vessel_contact(vein, cap, affine).degrees > 300
    stump = np.array([0.0, 0.0, 0.0])
    assert vessel_contact(vein, cap, affine, stumps=(stump,)).degrees == 0.0


@pytest.mark.parametrize("indentation_outlined_as", ["tumour", "vein"])
def test_a_tumour_indenting_a_vein_is_read_in_the_image_whatever_the_outline_says(
    indentation_outlined_as,
):
    """A tear-drop vein (tumour inside its round contour) is told from a round vein a
    tumour only touches by the dark share of its convex cross-section, in the portal
    venous image: whether the outline gave the indentation to the tumour or to the vein."""
    world, affine = _grid(1.0)
    radial = np.hypot(world[..., 0], world[..., 1])
    vein = radial <= 5.0
    touching = np.linalg.norm(world - [12.0, 0.0, 0.0], axis=-1) <= 7.5
    bite = np.linalg.norm(world - [3.5, 0.0, 0.0], axis=-1) <= 3.0
    image = np.where(vein, 180.0, -80.0)  # a bright vein in fat
    round_vein = vessel_contact(
        vein, touching & ~vein, affine, image=np.where(touching & ~vein, 75.0, image)
    )
    tumour = (touching & ~vein) | bite
    outlined = vein & ~bite if indentation_outlined_as == "tumour" else vein
    indented = vessel_contact(outlined, tumour, affine, image=np.where(tumour, 75.0, image))
    assert round_vein.intrusion < 0.05 <= 0.1 <= indented.intrusion, (round_vein, indented)
    assert vessel_contact(outlined, tumour, affine).intrusion == 0.0  # no image, not read


def test_a_vein_touched_where_its_outline_gives_way_to_its_neighbour_s_is_read_in_the_channel():
    """Where the SMV joins the portal vein its outline stops at a label's edge, not at a
    wall: measured in its own outline the radius shrinks toward that edge and a tumour
    touching the vein's side there is missed; measured in the channel the two veins
    share, the vein keeps its radius up to the junction and the contact is read."""
    world, affine = _grid(1.0)
    outline = _portal_channel(world, (99.0, 99.0))  # nothing cut
    smv = outline["superior_mesenteric_vein"]
    channel = smv | outline["portal_vein"] | outline["splenic_vein"]
    beside_end = np.linalg.norm(world - [0.0, -10.0, -1.0], axis=-1) <= 5.5
    tumour = beside_end & ~channel
    assert vessel_contact(smv, tumour, affine).degrees < 10.0
    assert 30.0 <= vessel_contact(smv, tumour, affine, lumen=channel).degrees <= 180.0
    # a vessel that is the whole channel reads as it did
    away = np.linalg.norm(world - [0.0, -10.0, -20.0], axis=-1) <= 5.5
    alone = vessel_contact(smv, away & ~channel, affine)
    assert vessel_contact(smv, away & ~channel, affine, lumen=channel).degrees == alone.degrees
