"""Pancreas CT phantoms: truth measured from the painted geometry, images in HU, read as CT."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from reportgen.errors import ConfigError
from reportgen.io import load_study
from reportgen.report.assessable import acquired_families
from reportgen.synth import SynthOptions, synth_dataset
from reportgen.synth.generate import study_rng, synth_one
from reportgen.synth.pancreas import (
    CONTACT_MIN_DEG,
    FINDING_LABEL,
    Tube,
    contact_category,
    contact_degrees,
    painted_over,
    sample_case,
)
from reportgen.synth.scene import ellipsoid

VESSEL = Tube("v", np.array([[0.0, 0.0, -40.0], [0.0, 0.0, 40.0]]), 5.0)


def _sphere(centre, radius):
    return ellipsoid(centre, (radius, radius, radius))[0]


def test_contact_is_measured_around_the_vessel():
    assert contact_degrees(VESSEL, _sphere((0, 0, 0), 15)) == pytest.approx(360.0)
    assert contact_degrees(VESSEL, _sphere((30, 0, 0), 15)) == 0.0
    # a large tumour whose surface passes through the vessel's axis covers about half of it
    half = contact_degrees(VESSEL, _sphere((60, 0, 0), 60))
    assert 160.0 < half < 200.0
    # a fat plane of 1 mm is no contact; a tumour 1 mm into the wall's surroundings is
    assert contact_degrees(VESSEL, _sphere((5.0 + 1.0 + 15.0, 0, 0), 15)) < CONTACT_MIN_DEG
    assert 40.0 < contact_degrees(VESSEL, _sphere((5.0 + 0.75 + 15.0 - 1.0, 0, 0), 15)) < 80.0


def test_a_vessel_s_contact_is_read_where_it_is_painted_not_inside_the_vessel_covering_it():
    # a vein running on into a wider one painted over it (the SMV into the portal vein's
    # cap at the confluence): a tumour beside that stretch touches the wider vein only
    smv = Tube("smv", np.array([[0.0, 0.0, -40.0], [0.0, 0.0, 0.0]]), 5.0)
    portal = Tube("portal", np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 40.0]]), 6.5)
    beside_the_cap = _sphere((12.0, 0.0, -3.0), 7.0)
    assert contact_degrees(smv, beside_the_cap) > CONTACT_MIN_DEG
    assert contact_degrees(smv, beside_the_cap, covered_by=[portal.sdf()[0]]) < CONTACT_MIN_DEG
    assert contact_degrees(portal, beside_the_cap) > CONTACT_MIN_DEG
    # below the cap the SMV is itself, covered or not
    below = _sphere((12.0, 0.0, -20.0), 7.0)
    assert contact_degrees(smv, below, covered_by=[portal.sdf()[0]]) == pytest.approx(
        contact_degrees(smv, below)
    )
    # the phantom's own order: the portal vein covers the SMV, not the other way round
    vessels = sample_case(np.random.default_rng(0)).vessels
    covering = painted_over(vessels, "superior_mesenteric_vein")
    confluence = vessels["portal_vein"].points[:1].astype(np.float32)
    assert any(sdf(confluence)[0] < 0 for sdf in covering)
    assert not painted_over(vessels, list(vessels)[-1])


@pytest.mark.parametrize(
    ("degrees", "occluded", "value"),
    [
        (0.0, False, "sma_contact_none"),
        (120.0, False, "sma_contact_le180"),
        (180.0, False, "sma_contact_le180"),
        (185.0, False, "sma_contact_gt180"),
        (360.0, True, "sma_contact_occlusion"),
    ],
)
def test_contact_categories_follow_the_sar_apa_degrees(degrees, occluded, value):
    assert contact_category("sma_contact", degrees, occluded) == value


def _first_with_tumour(options: SynthOptions) -> int:
    for index in range(30):
        case = sample_case(study_rng(options, index))
        if any(lesion.kind == "pdac" for lesion in case.lesions):
            return index
    raise AssertionError("no tumour in 30 draws")


def test_a_ductal_adenocarcinoma_lies_in_the_gland():
    """Pulled toward a vessel it may reach beyond the pancreas, but never leaves it: part
    of every tumour is gland (MAX_OUTSIDE_GLAND)."""
    tumours = 0
    for index in range(40):
        case = sample_case(study_rng(SynthOptions("pancreas", seed=5), index))
        gland = case.pancreas[0]
        for lesion in (les for les in case.lesions if les.kind == "pdac"):
            tumours += 1
            axes = np.linspace(-1.0, 1.0, 9)
            grid = np.stack(np.meshgrid(axes, axes, axes), -1).reshape(-1, 3)
            points = lesion.centre + grid * lesion.size_mm / 2
            inside = points[lesion.sdf(points) < 0]
            assert (gland(inside) < 0).any(), index
    assert tumours >= 15


def test_a_phantom_with_a_tumour_is_valid_truth_in_hounsfield_units(tmp_path, cli):
    options = SynthOptions(domain="pancreas", seed=61)
    index = _first_with_tumour(options)
    row = synth_one(options, index, tmp_path)
    folder = tmp_path / row["dir"]
    report = row["report"]
    assert report["template"]["id"] == "pancreas_ct"
    tumour = next(
        f for f in report["findings"] if f["fields"]["type"]["value"] == "pancreatic_solid_mass"
    )
    degrees = row["truth"]["lesions"][0]["contact_degrees"]
    for field_id, measured in degrees.items():  # each vessel's value is its measured contact
        value = tumour["fields"][field_id]["value"]
        if not value.endswith("occlusion"):
            assert value == contact_category(field_id, measured, False)
    study = load_study(folder)
    assert study.modality == "CT" and list(study.sequences) == ["CT_NC", "CT_PANC", "CT_PV"]
    assert acquired_families(study.sequences) == {"ct", "ct_contrast"}
    panc = nib.load(folder / "CT_PANC.nii.gz")
    assert panc.get_data_dtype() == np.int16 and float(panc.dataobj.slope or 1) == 1.0
    image = np.asarray(panc.dataobj)
    mask = np.asarray(nib.load(folder / "lesion_mask.nii.gz").dataobj)
    assert image.min() == -1024  # air, in HU
    tumour_hu = image[mask == FINDING_LABEL + 1].mean()
    pancreas_hu = image[mask == 1].mean()
    if tumour["fields"]["attenuation"]["value"] == "hypoattenuating":
        assert pancreas_hu - tumour_hu > 25, (pancreas_hu, tumour_hu)
    # an untagged phantom CT goes to the pancreas reader by its anatomy (the coarse outline)
    drafted = cli("generate", folder, "--out", tmp_path / "draft.json", "--no-explain")
    assert drafted.code == 0, drafted.err
    assert json.loads((tmp_path / "draft.json").read_text())["template"]["id"] == "pancreas_ct"


def test_the_same_seed_writes_the_same_truth_and_a_scanner_shift_another_grid(tmp_path):
    options = SynthOptions(domain="pancreas", seed=62)
    first = synth_one(options, 0, tmp_path / "a")
    again = synth_one(options, 0, tmp_path / "b")
    assert first["report"] == again["report"]
    assert (tmp_path / "a" / first["dir"] / "CT_PV.nii.gz").read_bytes() == (
        tmp_path / "b" / again["dir"] / "CT_PV.nii.gz"
    ).read_bytes()
    shifted = synth_one(
        SynthOptions(domain="pancreas", seed=62, shift="scanner"), 0, tmp_path / "c"
    )
    assert shifted["acquisition"]["storage"] == "LPS"
    assert shifted["acquisition"]["spacing"] != first["acquisition"]["spacing"]
    json.dumps(shifted["truth"])  # the manifest's truth is plain JSON


def test_pancreas_phantoms_refuse_an_mri_protocol(tmp_path):
    with pytest.raises(ConfigError, match="pancreas phantoms are CT"):
        synth_dataset(tmp_path / "x", 1, SynthOptions(domain="pancreas", protocol="low_resolution"))
    with pytest.raises(ConfigError, match="protocol ct"):
        synth_dataset(tmp_path / "y", 1, SynthOptions(domain="ovary", protocol="ct"))


@pytest.mark.parametrize(
    ("x", "part"),
    [
        (-30.0, "pancreas_head"),
        (-6.0, "pancreas_neck"),
        (10.0, "pancreas_body"),
        (40.0, "pancreas_tail"),
    ],
)
def test_the_part_of_the_pancreas_follows_the_smv_and_the_aorta(x, part):
    from reportgen.measure.pancreas import pancreas_part

    assert pancreas_part(x, smv_x_mm=-5.0, smv_radius_mm=5.0, aorta_left_x_mm=23.0) == part


def test_perfect_outlines_measure_and_read_into_a_valid_report_that_matches_the_truth(tmp_path):
    """The measurement layer on the phantom's own label map (on the reader's 2 mm grid):
    the lesion's type, part, attenuation and the ducts as the truth states them."""
    from reportgen.data.truth import named_outlines
    from reportgen.measure.pancreas import measure_pancreas_study
    from reportgen.model.pancreas_reading import read_pancreas
    from reportgen.preprocessing import CT_CHANNELS, CT_WINDOW_HU, prepare_ct
    from reportgen.report import build_report, load_template
    from reportgen.report.schema import Provenance, StudyRef

    options = SynthOptions(domain="pancreas", seed=63)
    row = synth_one(options, _first_with_tumour(options), tmp_path)
    study = load_study(tmp_path / row["dir"])
    ready = prepare_ct(study)
    low, high = CT_WINDOW_HU
    hu = {n: ready.image[k] * (high - low) + low for k, n in enumerate(CT_CHANNELS)}
    kinds = {"ductal_adenocarcinoma": "tumour", "cystic_lesion": "cyst"}
    outlines = named_outlines(ready.mask, row["truth"], kinds)
    measures = measure_pancreas_study(outlines, hu, ready.affine)
    fields, findings = read_pancreas(measures)
    truth = row["report"]
    tumour = next(
        f for f in truth["findings"] if f["fields"]["type"]["value"] == "pancreatic_solid_mass"
    )
    read = next(f for f in findings if f["type"] == "pancreatic_solid_mass")
    assert read["location"] == tumour["fields"]["location"]["value"]
    assert read["attenuation"] == tumour["fields"]["attenuation"]["value"]
    assert abs(read["size_mm"] - tumour["fields"]["size_mm"]["value"]) <= 6
    for key in ("duct_dilatation", "biliary_dilatation"):
        assert fields[key] == truth["fields"][key]["value"], key
    report = build_report(
        load_template("pancreas_ct"),
        fields,
        findings,
        study=StudyRef(study_id="t", sequences_used=list(study.sequences)),
        provenance=Provenance(source="model"),
    )
    assert report.validation.valid, report.validation.problems


def test_a_vein_reads_occluded_when_measured_so_whatever_its_arc():
    from reportgen.measure.pancreas import PancreasMeasures, PancreaticLesion
    from reportgen.measure.vessels import VesselContact
    from reportgen.model.pancreas_reading import read_pancreas

    def lesion(smv: VesselContact) -> PancreaticLesion:
        clear = VesselContact(0.0, 0.0, 1, 0.0, 3.0)
        contacts = {name: clear for name in ("superior_mesenteric_artery", "celiac_axis",
                                              "common_hepatic_artery", "portal_vein")}  # fmt: skip
        contacts["superior_mesenteric_vein"] = smv
        return PancreaticLesion("tumour", 30.0, (0.0, 0.0, 0.0), "pancreas_head",
                                {"CT_PANC": -50.0}, {"CT_PANC": 60.0}, 1.0, contacts)  # fmt: skip

    def read(smv: VesselContact) -> str:
        measures = PancreasMeasures([lesion(smv)], 5.0, 4.0, 0, 0, 0.0, [], 10.0, 20.0, 5.0)
        return read_pancreas(measures)[1][0]["smv_contact"]

    assert read(VesselContact(300.0, 20.0, 2, 12.0, 5.0, occluded=True)) == "smv_contact_occlusion"
    assert read(VesselContact(90.0, 20.0, 2, 12.0, 5.0)) == "smv_contact_le180"  # a gap elsewhere
    assert read(VesselContact(300.0, 20.0, 1, 0.0, 5.0)) == "smv_contact_gt180"
    assert read(VesselContact(5.0, 2.0, 1, 0.0, 5.0)) == "smv_contact_none"


@pytest.mark.parametrize(("index", "vein"), [(9, "portal_vein"), (19, "superior_mesenteric_vein")])
def test_a_painted_occlusion_cuts_the_vein_where_the_measurement_finds_it(tmp_path, index, vein):
    """An occluded vein has no lumen across the tumour (not a crescent of patent vein
    beside it), so the measurement finds the cut and gives it to the right vein."""
    from reportgen.data.truth import named_outlines
    from reportgen.measure.pancreas import occluded_vein
    from reportgen.model.pancreas_reader import FINE_LESIONS

    row = synth_one(SynthOptions("pancreas", seed=5), index, tmp_path)
    study = load_study(tmp_path / row["dir"])
    outline = named_outlines(study.lesion_mask.data, row["truth"], FINE_LESIONS)
    empty = np.zeros(study.lesion_mask.data.shape, bool)
    found = occluded_vein(outline, empty, outline["tumour"], study.lesion_mask.affine)
    assert found is not None and found.vein == vein
