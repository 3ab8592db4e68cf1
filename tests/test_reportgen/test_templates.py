"""Templates: load and validate; rules derive assessment and stage; validation catches errors."""

from __future__ import annotations

import copy

import pytest
import yaml
from helpers.report_examples import BREAST, SPICULATED

from reportgen.errors import ConfigError
from reportgen.report import available_templates, build_report, load_template, validate_report
from reportgen.report.rules import Scope, evaluate
from reportgen.report.schema import Provenance, Report, StudyRef
from reportgen.report.template import parse_template
from templates import TEMPLATE_DIR

STUDY = StudyRef(study_id="t")
SYNTH = Provenance(source="synthetic")

FIBROADENOMA = {
    **SPICULATED,
    "laterality": "right",
    "clock": "clock_10",
    "shape": "shape_oval",
    "margin": "margin_circumscribed",
    "internal_enhancement": "enhancement_dark_septations",
    "kinetics_initial": "initial_medium",
    "kinetics_delayed": "delayed_persistent",
    "t2_signal": "t2_hyperintense",
    "diffusion": "diffusion_not_restricted",
}
CERVIX = {
    "parametrial_invasion": False,
    "vaginal_involvement": "vagina_not_involved",
    "pelvic_sidewall": False,
    "hydronephrosis": False,
    "bladder_mucosa": False,
    "rectal_mucosa": False,
    "pelvic_nodes": False,
    "paraaortic_nodes": False,
}
ENDOMETRIUM = {
    k: False
    for k in [
        "cervical_stromal_invasion",
        "serosal_involvement",
        "adnexal_involvement",
        "vaginal_or_parametrial_involvement",
        "pelvic_peritoneal_involvement",
        "bladder_mucosa",
        "bowel_mucosa",
        "pelvic_nodes",
        "paraaortic_nodes",
    ]
}


def with_node_detail(fields: dict) -> dict:
    """A staging report with metastatic nodes states their side and largest short axis."""
    if fields.get("pelvic_nodes") or fields.get("paraaortic_nodes"):
        return {"node_side": "right", "node_short_axis_mm": 14, **fields}
    return fields


def _report(template_id, fields, findings, **kw) -> Report:
    return build_report(
        load_template(template_id), fields, findings, study=STUDY, provenance=SYNTH, **kw
    )


def test_all_four_templates_load():
    assert {"birads_mri", "figo_cervix_2018", "figo_endometrium_2023", "orads_mri"} <= set(
        available_templates()
    )
    for template_id in available_templates():
        template = load_template(template_id)
        assert template.id == template_id
        assert template.fields and template.finding_fields, template_id
        assert template.title["en"] and template.title["zh"], template_id


def test_rules_do_not_confuse_true_with_one():
    assert evaluate({"field": "x", "is": True}, Scope({"x": True}))
    assert not evaluate({"field": "x", "is": True}, Scope({"x": 1}))
    assert not evaluate({"field": "missing", "is": False}, Scope({}))
    assert evaluate({"field": "missing", "present": False}, Scope({}))
    assert evaluate(
        {"any_finding": {"field": "size_mm", "gt": 40}}, Scope({}, findings=[{"size_mm": 41}])
    )


@pytest.mark.parametrize(
    ("findings", "extra", "assessment", "management"),
    [
        ([], {}, "birads_1", "mgmt_routine_screening"),
        ([FIBROADENOMA], {}, "birads_2", "mgmt_routine_screening"),
        ([SPICULATED], {}, "birads_5", "mgmt_tissue_diagnosis"),
        ([FIBROADENOMA], {"axillary_adenopathy": True}, "birads_4", "mgmt_tissue_diagnosis"),
        (
            [
                {
                    **FIBROADENOMA,
                    "diffusion": "diffusion_restricted",
                    "internal_enhancement": "enhancement_homogeneous",
                    "t2_signal": "t2_isointense",
                }
            ],
            {},
            "birads_4",
            "mgmt_tissue_diagnosis",
        ),
        (
            [{**FIBROADENOMA, "t2_signal": "t2_isointense"}],
            {},
            "birads_3",
            "mgmt_short_interval_followup",
        ),
        ([], {"technically_adequate": False}, "birads_0", "mgmt_additional_imaging"),
        ([SPICULATED], {"known_malignancy": True}, "birads_6", "mgmt_surgical_excision"),
    ],
)
def test_birads_assessment_rules(findings, extra, assessment, management):
    report = _report("birads_mri", {**BREAST, **extra}, findings)
    assert report.derived["assessment"].value == assessment
    assert report.derived["management"].value == management
    assert report.validation.valid, report.validation.problems


def test_quadrant_follows_the_clock_face_per_side():
    report = _report(
        "birads_mri", BREAST, [FIBROADENOMA, SPICULATED, {**FIBROADENOMA, "clock": "clock_12"}]
    )
    assert (
        report.findings[0].derived["quadrant"].value == "quadrant_upper_outer"
    )  # right 10 o'clock
    assert report.findings[1].derived["quadrant"].value == "quadrant_upper_outer"  # left 2 o'clock
    assert "quadrant" not in report.findings[2].derived  # 12 o'clock lies between quadrants


@pytest.mark.parametrize(
    ("size", "changes", "stage"),
    [
        (15, {}, "figo2018_IB1"),
        (30, {}, "figo2018_IB2"),
        (45, {}, "figo2018_IB3"),
        (30, {"vaginal_involvement": "vagina_upper_two_thirds"}, "figo2018_IIA1"),
        (45, {"vaginal_involvement": "vagina_upper_two_thirds"}, "figo2018_IIA2"),
        (30, {"parametrial_invasion": True, "parametrial_side": "right"}, "figo2018_IIB"),
        (
            30,
            {
                "vaginal_involvement": "vagina_lower_third",
                "parametrial_invasion": True,
                "parametrial_side": "bilateral",
            },
            "figo2018_IIIA",
        ),
        (30, {"hydronephrosis": True}, "figo2018_IIIB"),
        (30, {"pelvic_nodes": True, "pelvic_sidewall": True}, "figo2018_IIIC1"),
        (30, {"paraaortic_nodes": True, "pelvic_nodes": True}, "figo2018_IIIC2"),
        (30, {"bladder_mucosa": True, "paraaortic_nodes": True}, "figo2018_IVA"),
        (30, {"distant_metastasis": True}, "figo2018_IVB"),
    ],
)
def test_figo_cervix_stages(size, changes, stage):
    fields = with_node_detail({**CERVIX, **changes})
    report = _report("figo_cervix_2018", fields, [{"size_mm": size}])
    assert report.derived["stage"].value == stage
    assert report.derived["management"].value == "figo_mgmt_mdt"  # every stage
    assert report.validation.valid


def test_metastatic_nodes_state_their_side_and_short_axis_and_only_then():
    nodes = {**CERVIX, "pelvic_nodes": True}
    unsided = _report("figo_cervix_2018", nodes, [{"size_mm": 30}])
    assert {p.where for p in unsided.validation.problems} == {
        "fields.node_side",
        "fields.node_short_axis_mm",
    }
    stated = _report("figo_cervix_2018", with_node_detail(nodes), [{"size_mm": 30}])
    assert stated.validation.valid
    from reportgen.render import render_text

    assert "Largest metastatic lymph node: 14 mm in short axis." in render_text(stated, "en")
    stray = _report("figo_cervix_2018", {**CERVIX, "node_side": "left"}, [{"size_mm": 30}])
    assert not stray.validation.valid


def test_parametrial_invasion_states_its_side_and_only_then():
    unsided = _report(
        "figo_cervix_2018", {**CERVIX, "parametrial_invasion": True}, [{"size_mm": 30}]
    )
    assert [(p.where, p.message) for p in unsided.validation.problems] == [
        ("fields.parametrial_side", "required but missing")
    ]
    stray = _report("figo_cervix_2018", {**CERVIX, "parametrial_side": "left"}, [{"size_mm": 30}])
    assert any(
        p.where == "fields.parametrial_side" and "does not apply" in p.message
        for p in stray.validation.problems
    )


@pytest.mark.parametrize(
    ("invasion", "changes", "stage"),
    [
        ("myometrial_invasion_superficial", {}, "figo2023_IA"),
        ("myometrial_invasion_deep", {}, "figo2023_IB"),
        ("myometrial_invasion_deep", {"cervical_stromal_invasion": True}, "figo2023_II"),
        ("myometrial_invasion_deep", {"adnexal_involvement": True}, "figo2023_IIIA1"),
        (
            "myometrial_invasion_deep",
            {"adnexal_involvement": True, "serosal_involvement": True},
            "figo2023_IIIA2",
        ),
        (
            "myometrial_invasion_deep",
            {"vaginal_or_parametrial_involvement": True},
            "figo2023_IIIB1",
        ),
        ("myometrial_invasion_superficial", {"pelvic_nodes": True}, "figo2023_IIIC1"),
        ("myometrial_invasion_superficial", {"paraaortic_nodes": True}, "figo2023_IIIC2"),
        ("myometrial_invasion_superficial", {"bowel_mucosa": True}, "figo2023_IVA"),
    ],
)
def test_figo_endometrium_stages(invasion, changes, stage):
    report = _report(
        "figo_endometrium_2023",
        with_node_detail({**ENDOMETRIUM, **changes}),
        [{"size_mm": 30, "myometrial_invasion": invasion}],
    )
    assert report.derived["stage"].value == stage
    # every stage, with FIGO 2023's caveat that histotype and molecular class complete it
    assert report.derived["management"].value == "figo_mgmt_mdt_molecular"
    assert report.validation.valid


CYSTIC_SOLID = {  # an adnexal lesion with enhancing solid tissue and a high-risk curve
    "laterality": "right",
    "size_mm": 60,
    "composition": "composition_cystic_solid",
    "fluid": "fluid_simple",
    "lipid": False,
    "solid_tissue": True,
    "dark_t2_dwi": False,
    "tic": "tic_high_risk",
}


def test_orads_scores():
    cyst = {
        "laterality": "left",
        "size_mm": 40,
        "composition": "composition_unilocular_cyst",
        "fluid": "fluid_simple",
        "wall": "wall_not_enhancing",
        "lipid": False,
        "solid_tissue": False,
    }
    solid = CYSTIC_SOLID
    assert (
        _report("orads_mri", {"peritoneal_implants": False, "ascites": False}, [])
        .derived["risk_score"]
        .value
        == "orads_1"
    )
    assert (
        _report("orads_mri", {"peritoneal_implants": False, "ascites": False}, [cyst])
        .derived["risk_score"]
        .value
        == "orads_2"
    )
    report = _report("orads_mri", {"peritoneal_implants": False, "ascites": True}, [cyst, solid])
    assert [f.derived["score"].value for f in report.findings] == ["orads_2", "orads_5"]
    assert report.derived["risk_score"].value == "orads_5" and report.validation.valid


@pytest.mark.parametrize(
    ("tic", "score", "management"),
    [
        ("tic_low_risk", "orads_3", "orads_mgmt_gynaecology"),
        ("tic_intermediate_risk", "orads_4", "orads_mgmt_oncology_consultation"),
        ("tic_high_risk", "orads_5", "orads_mgmt_oncology_referral"),
    ],
)
def test_orads_management_follows_the_risk(tic, score, management):
    solid = {**CYSTIC_SOLID, "tic": tic}
    report = _report("orads_mri", {"peritoneal_implants": False, "ascites": False}, [solid])
    assert report.derived["risk_score"].value == score
    assert report.derived["management"].value == management
    normal = _report("orads_mri", {"peritoneal_implants": False, "ascites": False}, [])
    assert normal.derived["management"].value == "orads_mgmt_none"


def test_orads_states_the_lexicon_descriptors_a_reader_adds():
    """Origin, the ipsilateral ovary, the loculi, T2 dark shading and the solid tissue's
    morphology are the reader's to add (no score rule reads them, none is required): the
    template says each in both languages and refuses one that does not apply."""
    from reportgen.render import render_text

    plain = {"peritoneal_implants": False, "ascites": False}
    described = {
        **CYSTIC_SOLID,
        "origin": "origin_ovarian",
        "ipsilateral_ovary": False,
        "loculi": 3,
        "t2_dark_shading": False,
        "solid_morphology": "solid_papillary_projection",
    }
    report = _report("orads_mri", plain, [described])
    assert report.validation.valid, report.validation.problems
    assert (
        report.derived["risk_score"].value
        == _report("orads_mri", plain, [CYSTIC_SOLID]).derived["risk_score"].value
    )  # no score rule reads them
    text = render_text(report, "en")
    for phrase in ("Origin: ovarian origin.", "3 loculi.", "Solid tissue: papillary projection."):
        assert phrase in text
    assert "实性成分：乳头状突起。" in render_text(report, "zh")
    cyst = {
        "laterality": "left",
        "size_mm": 40,
        "composition": "composition_unilocular_cyst",
        "fluid": "fluid_endometriotic",
        "wall": "wall_not_enhancing",
        "lipid": False,
        "solid_tissue": False,
        "solid_morphology": "solid_mural_nodule",  # a cyst has no solid tissue to describe
    }
    wrong = _report("orads_mri", plain, [cyst])
    assert [p.where for p in wrong.validation.problems] == ["findings[0].solid_morphology"]


@pytest.mark.parametrize(
    ("findings", "extra", "assessment"),
    [
        ([], {"implant_material": "implant_silicone"}, "birads_2"),
        ([], {"intramammary_lymph_node": True}, "birads_2"),
        ([], {"signal_void": True, "postoperative_collection": True}, "birads_2"),
        ([], {"architectural_distortion": True}, "birads_1"),  # the reader's judgement
        ([], {"intramammary_lymph_node": False}, "birads_1"),
        ([SPICULATED], {"implant_material": "implant_saline"}, "birads_5"),
    ],
)
def test_birads_states_the_lexicon_findings_a_reader_adds(findings, extra, assessment):
    """The intramammary node, non-enhancing findings and implants are the reader's to add
    (no model drafts them): the benign ones make an otherwise negative study benign
    (category 2); a suspicious finding still decides. Both languages say them, each in
    its own section."""
    from reportgen.render import render_text

    report = _report("birads_mri", {**BREAST, **extra}, findings)
    assert report.validation.valid, report.validation.problems
    assert report.derived["assessment"].value == assessment
    if "implant_material" in extra:
        implants = _report(
            "birads_mri",
            {
                **BREAST,
                **extra,
                "implant_location": "implant_retropectoral",
                "implant_integrity": "implant_intracapsular_rupture",
            },
            findings,
        )
        text = render_text(implants, "en")
        assert "Implants:" in text and "Implant integrity: intracapsular rupture." in text
        assert "假体完整性：囊内破裂。" in render_text(implants, "zh")


def test_an_implant_location_without_an_implant_is_refused():
    report = _report("birads_mri", {**BREAST, "implant_location": "implant_retroglandular"}, [])
    assert [p.where for p in report.validation.problems] == ["fields.implant_location"]


def _problems(report):
    return {(p.severity, p.where, p.rule) for p in validate_report(report).problems}


def test_validation_catches_missing_inapplicable_out_of_range_and_wrong_code():
    good = _report("birads_mri", BREAST, [SPICULATED])
    assert validate_report(good).valid
    bad = good.model_copy(deep=True)
    del bad.fields["bpe_level"]
    bad.findings[0].fields["nme_pattern"] = copy.deepcopy(
        bad.findings[0].fields["shape"]
    )  # not for masses
    bad.findings[0].fields["size_mm"].value = 400
    bad.findings[0].fields["margin"].concept.code = "RDE1579_smooth"
    result = validate_report(bad)
    where = {p.where for p in result.problems if p.severity == "error"}
    assert not result.valid
    assert {
        "fields.bpe_level",
        "findings[0].nme_pattern",
        "findings[0].size_mm",
        "findings[0].margin",
    } <= where


def test_contradiction_from_the_issue_is_an_error():
    """A spiculated irregular mass with washout, assessed BI-RADS 2 by a clinician."""
    report = _report(
        "birads_mri", BREAST, [SPICULATED], stated={"assessment": "birads_2"}, trust_stated=True
    )
    assert report.derived["assessment"].value == "birads_2"  # the clinician's call is kept ...
    assert ("error", "report", "spiculated_washout_called_benign") in _problems(
        report
    )  # ... and flagged
    assert ("warning", "derived.assessment", "derivation") in _problems(report)
    assert not report.validation.valid


def test_model_prediction_that_disagrees_with_rules_is_reported():
    report = _report("birads_mri", BREAST, [SPICULATED], stated={"assessment": "birads_3"})
    assert report.derived["assessment"].value == "birads_5"
    assert any(
        p.rule == "prediction" and "birads_3" in p.message for p in report.validation.problems
    )
    # ... to the reviewer (the JSON, the review page), never in what a clinician signs
    from reportgen.render import render_text, to_fhir_bundle
    from reportgen.render.html import render_html
    from reportgen.render.notes import report_notes

    signed = [render_text(report, "en"), render_text(report, "zh"), render_html(report)]
    signed += [to_fhir_bundle(report).model_dump_json(), *report_notes(report)]
    for out in signed:
        assert "birads_3" not in out and "template's rules give" not in out


def test_report_json_round_trip_keeps_schema_id():
    report = _report("figo_cervix_2018", CERVIX, [{"size_mm": 22}])
    text = report.to_json()
    assert '"schema": "reportgen.report/1"' in text
    again = Report.from_json(text)
    assert again == report


# Template files: shape and meaning are checked; a new template is just a new file --------


def _field_named(raw: dict, field_id: str) -> dict:
    return next(f for f in raw["fields"] if f["id"] == field_id)


def _birads_raw() -> dict:
    return yaml.safe_load((TEMPLATE_DIR / "birads_mri.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda t: t.pop("sections"), "template schema"),
        (lambda t: t["fields"][0].update(colour="red"), "template schema"),
        (
            lambda t: t["fields"][0].update(values=["fgt_scattered", "spiculated_pizza"]),
            "not an ontology concept",
        ),
        (
            lambda t: t["fields"][0].update(values=["fgt_scattered", "margin_spiculated"]),
            "not a kind of",
        ),
        (
            lambda t: t["derived"]["report"][0]["rules"][0].update(value="birads_9"),
            "not one of its values",
        ),
        (
            lambda t: t["consistency"][0]["when"]["all"][1].update(field="asessment"),
            "unknown field",
        ),
        (lambda t: t["fields"][0].update(section="nowhere"), "section"),
        (lambda t: t.update(headline="management_plan"), "headline"),
        (lambda t: t.pop("headline"), "template schema"),
        (
            lambda t: t["derived"]["report"][0].update(suspicious=["birads_9"]),
            "suspicious values",
        ),
        (
            lambda t: _field_named(t, "implant_material").update(required=True),
            "cannot be required",
        ),
        (
            lambda t: t["fields"][0].update(
                applicable_if={"field": "implant_material", "is": "implant_saline"}
            ),
            "no draft could state it",
        ),
    ],
)
def test_malformed_templates_are_refused(mutate, fragment):
    raw = _birads_raw()
    mutate(raw)
    with pytest.raises(ConfigError, match=fragment):
        parse_template(raw, "test.yaml")


def test_adding_a_template_is_adding_a_file(tmp_path, monkeypatch):
    raw = _birads_raw()
    raw["id"] = "birads_mri_local"
    raw["title"] = {"en": "Local breast MRI", "zh": "本院乳腺MRI"}
    (tmp_path / "birads_mri_local.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    monkeypatch.setenv("REPORTGEN_TEMPLATES", str(tmp_path))
    assert "birads_mri_local" in available_templates()
    assert load_template("birads_mri_local").title["zh"] == "本院乳腺MRI"


@pytest.mark.parametrize(
    ("template_id", "headline", "suspicious"),
    [
        ("birads_mri", "assessment", "category"),
        ("figo_cervix_2018", "stage", None),
        ("figo_endometrium_2023", "stage", None),
        ("orads_mri", "risk_score", "score"),
    ],
)
def test_templates_declare_their_headline_and_suspicious_values(template_id, headline, suspicious):
    template = load_template(template_id)
    assert template.headline == headline
    spec = template.suspicious_finding_result
    assert (spec.id if spec else None) == suspicious


def test_unknown_template_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown template 'pirads'"):
        load_template("pirads")


ENHANCEMENT_WORDS = ("enhanc", "kinetic", "bpe", "tic_curve")


@pytest.mark.parametrize("template_id", sorted(available_templates()))
def test_every_enhancement_finding_needs_a_contrast_series(template_id):
    """A field (or value) that states enhancement is read from DCE: declared so, it is never
    written for a study without contrast (an ovarian draft once said "Enhancing solid
    tissue is present" without DCE)."""
    template = load_template(template_id)
    for spec in [*template.fields, *template.finding_fields]:
        if any(w in spec.concept for w in ENHANCEMENT_WORDS):
            assert "dce" in spec.requires, f"{template_id}.{spec.id} states enhancement"
        elif "dce" not in spec.requires:
            needs = dict(spec.value_requires)
            for value in spec.values:
                if any(w in value for w in ENHANCEMENT_WORDS):
                    assert "dce" in needs.get(value, ()), f"{template_id}.{spec.id}={value}"
