"""Report-level breast findings measured at the acquisition's own resolution: skin
thickness, axillary node short axis, and a draft that states what was measured."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.report_examples import BREAST
from scipy import ndimage

from reportgen.io.study import Study, Volume
from reportgen.measure.axilla import ADENOPATHY_SHORT_AXIS_MM, axillary_nodes, short_axis_mm
from reportgen.measure.breast import BreastLandmarks
from reportgen.measure.skin import SKIN_THICKENING_MM, skin_thickness
from reportgen.model.grammar import GrammarError, TemplateGrammar
from reportgen.model.study_findings import measure_study_findings
from reportgen.model.vocab import ReportVocab
from reportgen.render import render_text
from reportgen.report import Report, build_report, load_template
from reportgen.report.schema import Provenance, StudyRef

SPACING = (0.9, 0.9, 2.0)
RADIUS_MM = 40.0  # a hemispherical breast on a chest wall at y = 0, its nipple at y = 40


def _grid(lo, hi, spacing=SPACING) -> tuple[np.ndarray, np.ndarray]:
    """A grid from world corner `lo` to `hi` (mm): its affine and voxel world points."""
    shape = tuple(round((h - lo_) / s) + 1 for lo_, h, s in zip(lo, hi, spacing, strict=True))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = lo
    index = np.indices(shape).reshape(3, -1).T
    return affine, (index @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


def _breast(skin_mm: float, dense_under_skin: bool = False, seed: int = 0):
    """Pre-contrast T1 and T2W of a fatty hemisphere with a skin shell of `skin_mm`
    (T1 grey, T2W bright as oedematous skin is, or grey as normal skin); with
    `dense_under_skin`, fibroglandular tissue (dark on both) fills the breast up to the
    skin. Partial volume by a half-voxel blur, and a little noise."""
    affine, world = _grid((-50.0, -10.0, -50.0), (50.0, 55.0, 50.0))
    r = np.linalg.norm(world, axis=-1)
    breast = (r <= RADIUS_MM) & (world[..., 1] >= 0)
    skin = breast & (r > RADIUS_MM - skin_mm)
    inner = breast & ~skin
    t2_skin = 0.75 if skin_mm > 3 else 0.5
    t1 = np.where(skin, 0.4, 0.0) + np.where(inner, 0.3 if dense_under_skin else 0.85, 0.0)
    t2 = np.where(skin, t2_skin, 0.0) + np.where(inner, 0.42 if dense_under_skin else 0.8, 0.0)
    chest = world[..., 1] < 0  # muscle behind the breast: dark on both
    t1, t2 = np.where(chest, 0.35, t1), np.where(chest, 0.22, t2)
    if dense_under_skin:  # bright fat elsewhere in the body sets fat's level
        fat = (world[..., 1] < -4) & (np.abs(world[..., 0]) > 30)
        t1, t2 = np.where(fat, 0.85, t1), np.where(fat, 0.8, t2)
    rng = np.random.default_rng(seed)
    sigma = 0.5 * np.ones(3)

    def acquire(image):
        blurred = ndimage.gaussian_filter(image.astype(np.float32), sigma)
        return Volume((blurred + rng.normal(0, 0.01, image.shape)).astype(np.float32), affine)

    landmarks = BreastLandmarks(0.0, {"right": (0.0, RADIUS_MM, 0.0)}, {"right": 0.0})
    return acquire(t1), acquire(t2), landmarks


@pytest.mark.parametrize("skin_mm", [1.6, 6.0])
def test_skin_thickness_is_measured_across_the_skin(skin_mm):
    t1, t2, landmarks = _breast(skin_mm)
    measured = skin_thickness(t1, t2, landmarks)
    assert measured.rays["right"] >= 20
    assert abs(measured.by_side["right"] - skin_mm) < 1.2
    assert measured.thickened is (skin_mm > SKIN_THICKENING_MM)


def test_dense_tissue_against_the_skin_is_not_skin():
    """On T1 fibroglandular tissue is as dark as skin; T2W ends the skin where it starts."""
    t1, t2, landmarks = _breast(1.6, dense_under_skin=True)
    measured = skin_thickness(t1, t2, landmarks)
    assert measured.by_side["right"] < 3.0 and measured.thickened is False


def _axilla(nodes: list[tuple[tuple[float, float, float], tuple[float, float, float]]]):
    """Fat with enhancing nodes (centre, semi-axes in mm) lateral to two breasts, and a
    landmarks record with nipples at x = +-40 mm and the chest wall at y = 0."""
    affine, world = _grid((-95.0, -30.0, -20.0), (95.0, 20.0, 20.0))
    node = np.zeros(world.shape[:3], bool)
    for centre, axes in nodes:
        node |= (((world - np.asarray(centre)) / np.asarray(axes)) ** 2).sum(-1) <= 1.0
    pre = np.where(node, 0.33, 0.85).astype(np.float32)
    rng = np.random.default_rng(3)
    volumes = [Volume(pre + rng.normal(0, 0.01, pre.shape).astype(np.float32), affine)]
    for gain in (0.9, 0.8, 0.7):
        post = np.where(node, pre + gain * 0.5, pre + 0.02)
        volumes.append(Volume((post + rng.normal(0, 0.01, pre.shape)).astype(np.float32), affine))
    nipples = {"right": (40.0, 40.0, 0.0), "left": (-40.0, 40.0, 0.0)}
    return volumes[0], volumes[1:], BreastLandmarks(0.0, nipples, {"right": 0.0, "left": 0.0})


def test_axillary_node_short_axis_and_adenopathy():
    enlarged = ((78.0, -12.0, 0.0), (8.0, 7.5, 7.8))  # 15 mm short axis, right axilla
    normal = ((-78.0, -12.0, 0.0), (4.5, 2.8, 3.2))  # 5.6 mm, left
    pre, post, landmarks = _axilla([enlarged, normal])
    nodes = axillary_nodes(pre, post, landmarks)
    assert abs(nodes.short_axis_mm["right"] - 15.0) < 1.5
    assert abs(nodes.short_axis_mm["left"] - 5.6) < 1.5
    assert nodes.adenopathy is True
    # a long node is not an enlarged one: its short axis decides
    long_normal = ((78.0, -12.0, 0.0), (11.0, 3.5, 4.0))
    pre, post, landmarks = _axilla([long_normal, normal])
    nodes = axillary_nodes(pre, post, landmarks)
    assert nodes.short_axis_mm["right"] < ADENOPATHY_SHORT_AXIS_MM and nodes.adenopathy is False


def test_short_axis_of_a_solid_ellipsoid():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (200_000, 3))
    points = points[(points**2).sum(1) <= 1] * np.array([9.0, 4.0, 6.0])
    assert abs(short_axis_mm(points) - 8.0) < 0.1


def test_a_study_without_its_series_measures_nothing():
    t1, t2, _ = _breast(6.0)
    assert measure_study_findings(Study("s", {"DCE_0": t1}, "t", "folder"), {"x"}).values == {}
    no_t1 = measure_study_findings(Study("s", {"T2W": t2}, "t", "folder"), {"skin_thickening"})
    assert no_t1.values == {} and no_t1.measurements == {}


def test_a_draft_states_the_measured_report_level_value():
    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    grammar = TemplateGrammar(template, vocab).study_measured_as({"skin_thickening": True})
    field, true, false = (vocab.id(t) for t in ("<f:skin_thickening>", "<true>", "<false>"))
    prefix: list[int] = []
    while True:
        allowed = grammar.allowed(prefix)
        if field in allowed:
            prefix.append(field)
            break
        prefix.append(min(allowed))
    assert grammar.allowed(prefix) == frozenset({true})
    with pytest.raises(GrammarError):
        grammar.parse([*prefix, false])
    free = TemplateGrammar(template, vocab)
    assert free.allowed(prefix) >= {true, false}


def test_the_text_states_the_measurement_behind_a_report_level_field():
    report = build_report(
        load_template("birads_mri"),
        {**BREAST, "skin_thickening": True},
        [],
        study=StudyRef(study_id="s"),
        provenance=Provenance(source="model"),
    )
    assert "(measured)" not in render_text(report, "en")  # nothing measured: nothing said
    report.study.measurements = {
        "skin_thickness_right_mm": 8.41,
        "skin_thickness_left_mm": 2.25,
        "axillary_node_short_axis_left_mm": 5.6,
    }
    en, zh = render_text(report, "en"), render_text(report, "zh")
    lines = en.splitlines()
    skin = lines.index("Skin thickening is present.")
    assert lines[skin + 1] == "Skin thickness (measured): right 8.4 mm, left 2.2 mm."
    assert "Largest axillary node, short axis (measured): left 5.6 mm." in lines
    assert "皮肤厚度（测量）：右侧 8.4 mm，左侧 2.2 mm。" in zh
    back = Report.from_json(report.to_json())  # the JSON keeps them; without any, no key
    assert back.study.measurements == report.study.measurements
    report.study.measurements = None
    assert "measurements" not in report.to_json()


@pytest.mark.parametrize("shift", [None, "scanner"])
def test_a_clinical_phantoms_skin_and_axillary_nodes_are_measured_as_drawn(shift):
    """The truth's skin thickening and adenopathy are in a clinical phantom's pixels and
    measure as stated; on another scanner too (oblique, stored LPS, noisier)."""
    from reportgen.synth import breast
    from reportgen.synth.acquisition import sample_acquisition
    from reportgen.synth.mri import acquire_series, synthesise_sequences

    rng = np.random.default_rng(7)
    case = breast.sample_case(rng, 0.0)
    case.lesions = []
    case.fields.update(axillary_adenopathy=True, skin_thickening=True)
    case.adenopathy_side = "left"
    acq = sample_acquisition(rng, "breast", shift, protocol="clinical")
    canvas = breast.render(case, acq, rng)
    series = acquire_series(synthesise_sequences(canvas, acq, rng), canvas.grid, acq)
    study = Study("p", {k: Volume(v, a) for k, (v, a) in series.items()}, "synth", "folder")
    found = measure_study_findings(study, {"skin_thickening", "axillary_adenopathy"})
    assert found.values == {"skin_thickening": True, "axillary_adenopathy": True}
    m = found.measurements
    assert m["axillary_node_short_axis_left_mm"] > ADENOPATHY_SHORT_AXIS_MM
    assert 4.0 < m["axillary_node_short_axis_right_mm"] < 8.0  # the normal one, 5.6 mm
    assert min(m["skin_thickness_right_mm"], m["skin_thickness_left_mm"]) > SKIN_THICKENING_MM


def test_the_axilla_is_lateral_to_the_nipple_and_behind_the_chest_wall():
    """The breast's lesion search stops where the axilla begins: a normal node there was
    drafted as a mass before."""
    from reportgen.measure.axilla import in_axilla

    _, _, landmarks = _axilla([])  # nipples at x = +-40, chest wall at y = 0
    points = np.array(
        [
            [78.0, -12.0, 0.0],  # right axilla
            [-78.0, -12.0, 0.0],  # left axilla
            [78.0, 20.0, 0.0],  # lateral, but in front of the chest wall: breast
            [45.0, -12.0, 0.0],  # behind the breast, not lateral to it
        ]
    )
    assert in_axilla(points, landmarks).tolist() == [True, True, False, False]
    assert in_axilla(points, landmarks, "left").tolist() == [False, True, False, False]


def test_fhir_carries_the_measurement_behind_a_report_level_field():
    from reportgen.render import to_fhir_bundle

    report = build_report(
        load_template("birads_mri"),
        {**BREAST, "skin_thickening": True},
        [],
        study=StudyRef(study_id="s", measurements={"skin_thickness_left_mm": 8.4}),
        provenance=Provenance(source="model"),
    )
    bundle = to_fhir_bundle(report).model_dump(mode="json", exclude_none=True)
    skin = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"].get("valueBoolean") is True
        and e["resource"].get("component")
    ]
    assert len(skin) == 1
    (component,) = skin[0]["component"]
    assert component["code"]["text"] == "Skin thickness, left"
    assert component["valueQuantity"] == {
        "value": 8.4,
        "unit": "mm",
        "system": "http://unitsofmeasure.org",
        "code": "mm",
    }


def test_a_ghosted_series_scores_as_ghosted_and_a_clean_one_does_not():
    """Motion ghosts are copies of the body along the phase-encoding direction: a copy at
    a third of the signal, a quarter of the field of view away (anterior-posterior),
    scores far above the same body without it; a study that ghosted is drafted
    technically inadequate."""
    from reportgen.measure.artefacts import GHOSTING_INADEQUATE, ghosting

    t1, t2, _ = _breast(1.6)
    clean = ghosting(t1)
    rolled = t1.data + 0.35 * np.roll(t1.data, t1.shape[1] // 4, axis=1)
    ghosted = ghosting(Volume(rolled.astype(np.float32), t1.affine))
    assert clean < GHOSTING_INADEQUATE < ghosted
    study = Study("g", {"T2W": t2, "DCE_0": Volume(rolled.astype(np.float32), t1.affine)}, "t", "f")
    found = measure_study_findings(study, {"technically_adequate"})
    assert found.values == {"technically_adequate": False}
    fine = measure_study_findings(
        Study("c", {"T2W": t2, "DCE_0": t1}, "t", "f"), {"technically_adequate"}
    )
    assert "technically_adequate" not in fine.values  # adequate is not stated
