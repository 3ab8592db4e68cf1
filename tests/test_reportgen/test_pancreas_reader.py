"""The pancreas CT reader: its two grids, distant disease measured on the coarse one, and
a tiny reader trained and drafting end to end (never a finding a plain CT cannot show)."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.io import load_study
from reportgen.measure.pancreas import hypoattenuating_liver_foci, measure_pancreas_study
from reportgen.preprocessing import GridSpec, prepare_ct
from reportgen.synth import SynthOptions, synth_dataset


def _ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


def test_distant_disease_is_counted_on_its_own_grid():
    """Deposits, nodes and ascites come from the coarse outline, in world millimetres,
    whatever the fine grid holds."""
    fine_affine = np.diag([1.0, 1.0, 2.0, 1.0])
    fine = {"pancreas": _ball((40, 40, 20), (20, 20, 10), 8)}
    coarse_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    coarse_affine[:3, 3] = (-40.0, -40.0, -40.0)
    shape = (30, 30, 20)
    liver = _ball(shape, (8, 8, 10), 6)
    deposits = _ball(shape, (6, 8, 10), 1.5) | _ball(shape, (10, 8, 10), 1.5)
    node = _ball(shape, (22, 15, 4), 1.5)
    coarse = {
        "liver": liver & ~deposits,
        "liver_metastasis": deposits,
        "lymph_node": node,
        "ascites": _ball(shape, (20, 25, 15), 2.5),
        "aorta": _ball(shape, (22, 12, 10), 2),
    }
    hu = {"CT_PANC": np.zeros((40, 40, 20), np.float32)}
    measures = measure_pancreas_study(fine, hu, fine_affine, (coarse, coarse_affine))
    assert measures.liver_deposits == 2
    assert len(measures.nodes) == 1
    x, y, z, _ = measures.nodes[0]
    assert (x, y, z) == pytest.approx((22 * 4 - 40, 15 * 4 - 40, 4 * 4 - 40), abs=0.5)
    assert measures.ascites_ml == pytest.approx(coarse["ascites"].sum() * 64 / 1000)
    assert measures.aorta_x_mm == pytest.approx(22 * 4 - 40, abs=0.5)
    # and without a coarse outline nothing distant is found on the fine grid
    alone = measure_pancreas_study(fine, hu, fine_affine)
    assert alone.liver_deposits == 0 and not alone.nodes and alone.ascites_ml == 0


def test_liver_deposits_are_read_from_the_portal_venous_pixels():
    """A dark focus wholly inside the liver is a deposit though no outline drew it; the
    same darkness at the liver's edge (partial volume with fat) or at water's attenuation
    (a cyst) is not."""
    shape = (30, 30, 20)
    liver = _ball(shape, (15, 15, 10), 10)
    hu = np.where(liver, 115.0, -100.0).astype(np.float32)
    deposit = _ball(shape, (12, 15, 10), 1.5)
    cyst = _ball(shape, (18, 15, 10), 1.5)
    edge = liver & ~_ball(shape, (15, 15, 10), 9) & (np.indices(shape)[0] <= 8)
    hu[deposit], hu[cyst], hu[edge] = 60.0, 8.0, 60.0
    found = hypoattenuating_liver_foci(hu, liver)
    assert found[deposit].all()
    assert not found[cyst].any() and not found[edge].any()
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    fine = {"pancreas": _ball((40, 40, 20), (20, 20, 10), 8)}
    ct = {"CT_PV": np.zeros((40, 40, 20), np.float32)}
    read = measure_pancreas_study(fine, ct, affine, ({"liver": liver}, affine), hu)
    assert read.liver_deposits == 1
    assert measure_pancreas_study(fine, ct, affine, ({"liver": liver}, affine)).liver_deposits == 0
    # beside the bile duct at the hilum the same focus is the duct's partial volume
    fine["common_bile_duct"] = _ball((40, 40, 20), (12, 17, 10), 1)
    hilum = measure_pancreas_study(fine, ct, affine, ({"liver": liver}, affine), hu)
    assert hilum.liver_deposits == 0


def test_peritoneal_nodules_are_read_from_the_portal_venous_pixels():
    """A solid soft-tissue nodule in the fat in front of the pancreas is a peritoneal
    nodule though no outline drew it; a normal-sized node, the bowel's thin wall and a
    nodule behind the pancreas's front (a retroperitoneal node) are not."""
    from reportgen.measure.pancreas import soft_tissue_nodules

    shape = (60, 60, 40)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # world y = 2 * index
    hu = np.full(shape, -100.0, np.float32)  # fat
    nodule = _ball(shape, (15, 40, 20), 2.5)  # 10 mm across, y = 80 mm
    small_node = _ball(shape, (30, 40, 20), 1.2)  # 5 mm across
    bowel = _ball(shape, (45, 40, 20), 7) & ~_ball(shape, (45, 40, 20), 5.5)  # 3 mm wall
    behind = _ball(shape, (15, 12, 20), 2.5)  # y = 24 mm
    hu[nodule | small_node | bowel | behind] = 70.0
    hu[_ball(shape, (45, 40, 20), 5.5)] = 10.0  # the bowel's fluid
    found = soft_tissue_nodules(hu, affine, in_front_of_mm=40.0)
    assert len(found) == 1
    assert found[0] == pytest.approx([30.0, 80.0, 40.0], abs=1.0)
    fine = {"pancreas": _ball((40, 40, 20), (20, 15, 10), 5)}  # front at y = 20 mm
    ct = {"CT_PV": np.zeros((40, 40, 20), np.float32)}
    fine_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    assert (
        measure_pancreas_study(fine, ct, fine_affine, nodule_pv=(hu, affine)).peritoneal_nodules
        == 2
    )
    assert measure_pancreas_study(fine, ct, fine_affine).peritoneal_nodules == 0


def test_a_lesion_is_sized_without_its_outline_s_thin_rays():
    """A 16 mm tumour whose outline leaks 20 mm along a 2 mm-wide strand (a vessel, a
    duct) measures about 16 mm, not the strand's reach; between its edge voxels' centres,
    not their outer corners (a voxel more)."""
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    shape = (60, 40, 20)
    world = np.indices(shape).transpose(1, 2, 3, 0) * np.array([1.0, 1.0, 2.0])
    tumour = np.linalg.norm(world - (20.0, 20.0, 20.0), axis=-1) <= 8.0
    tumour[28:48, 19:21, 10] = True  # the ray
    pancreas = np.linalg.norm(world - (20.0, 20.0, 20.0), axis=-1) <= 14.0
    outline = {"pancreas": pancreas & ~tumour, "tumour": tumour}
    measures = measure_pancreas_study(outline, {"CT_PV": np.zeros(shape, np.float32)}, affine)
    assert measures.lesions[0].size_mm == pytest.approx(16.0, abs=0.6)


@pytest.fixture(scope="module")
def pancreas_studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pancreas") / "studies"
    synth_dataset(folder, 3, SynthOptions("pancreas", seed=61), workers=1)
    return folder


def test_a_crop_is_centred_where_asked(pancreas_studies):
    study = load_study(pancreas_studies / "pancreas-s61-00000")
    grid = GridSpec((20, 16, 8), (1.0, 1.0, 2.0))
    ready = prepare_ct(study, grid, centre_mm=np.array([10.0, -5.0, 3.0]))
    centre = ready.affine[:3, :3] @ ((np.asarray(grid.shape) - 1) / 2) + ready.affine[:3, 3]
    assert centre == pytest.approx([10.0, -5.0, 3.0])
    assert np.diag(ready.affine)[:3] == pytest.approx(grid.spacing)


def test_beyond_the_field_of_view_reads_as_air_not_water(pancreas_studies):
    """A grid reaching past the series' edge is filled with the window's floor (below
    fat), not with 0 HU: a partial-coverage CT must not look like soft tissue there."""
    study = load_study(pancreas_studies / "pancreas-s61-00000")
    grid = GridSpec((8, 8, 8), (4.0, 4.0, 4.0))
    far = prepare_ct(study, grid, centre_mm=np.array([0.0, 0.0, 2000.0]))
    assert far.image[far.present].max() == 0.0


def test_a_tiny_reader_trains_and_drafts_what_each_study_can_show(pancreas_studies, tmp_path, cli):
    """Trained for a few steps it reads little, but every draft is a pancreas_ct report
    from this model, and a non-contrast copy states no solid mass, vessel contact or
    metastasis: resectability is not assessable."""
    from reportgen.io.study import Study
    from reportgen.model.generators import open_generator

    out = tmp_path / "reader"
    result = cli(
        "train-pancreas-reader", "--data", str(pancreas_studies), "--out", str(out),
        "--coarse-epochs", "1", "--fine-steps", "2", "--workers", "1",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert (out / "README.md").read_text().count("not for clinical use") == 1
    generator = open_generator(out)
    assert generator.template.id == "pancreas_ct"
    study = load_study(pancreas_studies / "pancreas-s61-00000")
    report = generator.draft(study).report
    assert report.template.id == "pancreas_ct"
    assert report.provenance.checkpoint_sha256 == generator.checkpoint
    assert "resectability" in report.derived
    plain = Study(
        study_id=study.study_id,
        sequences={"CT": study.sequences["CT_NC"]},
        source=study.source,
        form="folder",
    )
    draft = generator.draft(plain).report
    assert draft.derived["resectability"].value == "resectability_not_assessable"
    assert all(f.fields["type"].value != "pancreatic_solid_mass" for f in draft.findings)
    assert not {"liver_metastases", "peritoneal_nodules"} & set(draft.fields)
    assert [t.sequence for t in draft.study.technique] == ["CT"]


def test_a_prepared_study_cached_for_other_classes_is_not_read_as_these():
    """The training cache holds labels already mapped to classes: a cache written before
    the classes changed must miss, not hand the new outline the old labels."""
    from reportgen.model.pancreas_reader import PancreasReaderConfig
    from reportgen.model.pancreas_training import _grids_digest

    now = PancreasReaderConfig()
    before = PancreasReaderConfig(fine_classes=now.fine_classes[:-1])
    assert _grids_digest(now) == _grids_digest(PancreasReaderConfig())
    assert _grids_digest(now) != _grids_digest(before)


@pytest.mark.parametrize("indented", [False, True])
def test_a_vein_the_tumour_indents_is_read_as_irregular(indented):
    """180 degrees or less of SMV contact with a tear-drop vein (tumour inside its round
    contour) makes a tumour borderline (NCCN), a smooth one does not: the indentation is
    read in the portal venous phase."""
    from reportgen.model.pancreas_reading import read_pancreas

    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    shape = (50, 50, 20)
    world = np.indices(shape).transpose(1, 2, 3, 0) * np.array([1.0, 1.0, 2.0])
    vein = np.hypot(world[..., 0] - 25.0, world[..., 1] - 25.0) <= 5.0
    tumour = (np.linalg.norm(world - (37.5, 25.0, 20.0), axis=-1) <= 7.5) & ~vein
    if indented:
        tumour |= np.linalg.norm(world - (28.5, 25.0, 20.0), axis=-1) <= 3.0
    pancreas = (np.linalg.norm(world - (37.5, 25.0, 20.0), axis=-1) <= 14.0) & ~vein & ~tumour
    image = np.where(vein, 180.0, -80.0)
    image[pancreas], image[tumour] = 100.0, 60.0
    outline = {"pancreas": pancreas, "tumour": tumour, "superior_mesenteric_vein": vein}
    hu = {"CT_PANC": image, "CT_PV": image.astype(np.float32)}
    _, findings = read_pancreas(measure_pancreas_study(outline, hu, affine))
    assert findings[0]["smv_contact"] == "smv_contact_le180"
    assert findings[0]["vein_irregularity"] is indented
