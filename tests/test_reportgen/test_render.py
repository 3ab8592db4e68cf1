"""Renderers and the validate/render commands: preferred terms, FHIR R4, exit codes."""

from __future__ import annotations

import json

import pytest
from conftest import assert_refused

from reportgen.render import render_text, to_fhir_bundle
from reportgen.report import build_report, load_template
from reportgen.report.parse import parse_report
from reportgen.report.schema import Provenance, StudyRef

TEXT = (
    "Scattered fibroglandular tissue. Background parenchymal enhancement is mild and symmetric.\n"
    "Left breast, 2 o'clock, middle depth: there is an irregular enhancing lesion measuring 1.7 cm with spiculations, "
    "heterogeneously enhancing, rapid wash-in and a type III curve. It is T2-hypointense with reduced ADC.\n"
    "No axillary lymphadenopathy.\nImpression: BI-RADS 5."
)


@pytest.fixture
def parsed():
    return parse_report(TEXT, "birads_mri", "en")


def test_text_uses_preferred_terms_only(parsed):
    en = render_text(parsed, "en")
    for preferred in (
        "spiculated margin",
        "heterogeneous enhancement",
        "fast initial enhancement",
        "washout",
        "T2 hypointense",
        "restricted diffusion",
        "BI-RADS 5",
    ):
        assert preferred in en, preferred
    for synonym in (
        "spiculations",
        "heterogeneously enhancing",
        "rapid wash-in",
        "type III curve",
        "reduced ADC",
        "lymphadenopathy",
    ):
        assert synonym not in en, synonym
    zh = render_text(parsed, "zh")
    assert "毛刺状边缘" in zh and "BI-RADS 5类" in zh and "未见腋窝淋巴结肿大" in zh


def test_contradictions_and_notice_are_always_shown():
    template = load_template("figo_cervix_2018")
    fields = {
        "parametrial_invasion": False,
        "vaginal_involvement": "vagina_not_involved",
        "pelvic_sidewall": False,
        "hydronephrosis": True,
        "bladder_mucosa": False,
        "rectal_mucosa": False,
        "pelvic_nodes": False,
        "paraaortic_nodes": False,
    }
    report = build_report(
        template,
        fields,
        [{"size_mm": 20}],
        study=StudyRef(study_id="c"),
        provenance=Provenance(source="human"),
        stated={"stage": "figo2018_IB1"},
        trust_stated=True,
        notice="not for clinical use",
    )
    text = render_text(report, "en")
    assert "Hydronephrosis is stage IIIB or higher." in text and "[not for clinical use]" in text


def test_parsed_fixture_is_complete(parsed):
    assert parsed.validation.valid, parsed.validation.problems


def test_fhir_bundle(parsed):
    bundle = to_fhir_bundle(parsed)
    resources = [e.resource for e in bundle.entry]
    report = resources[0]
    assert report.get_resource_type() == "DiagnosticReport" and report.status == "preliminary"
    assert (
        report.code.coding[0].system == "http://snomed.info/sct"
        and report.code.coding[0].code == "241615005"
    )
    observations = resources[1:]
    assert len(observations) == len(parsed.fields) + len(parsed.findings) + len(parsed.derived)
    assert {r.reference for r in report.result} == {e.fullUrl for e in bundle.entry[1:]}
    margin = next(c for c in observations[len(parsed.fields)].component if c.code.text == "margin")
    assert margin.valueCodeableConcept.coding[0].code == "RDE1579_spiculated"
    assert report.conclusionCode[0].coding[0].code.startswith("RDE1586_category5")
    again = type(bundle).model_validate_json(bundle.model_dump_json())
    assert len(again.entry) == len(bundle.entry)


def test_validate_and_render_commands(tmp_path, cli, parsed):
    good = tmp_path / "good.json"
    good.write_text(parsed.to_json())
    assert cli("validate", good).code == 0
    bad = json.loads(parsed.to_json())
    bad["findings"][0]["fields"]["size_mm"]["value"] = 900
    del bad["fields"]["fgt_amount"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = cli("validate", tmp_path / "bad.json")
    assert (
        result.code == 2
        and "findings[0].size_mm" in result.out
        and "fields.fgt_amount" in result.out
    )
    (tmp_path / "broken.json").write_text("{")
    assert_refused(cli("validate", tmp_path / "broken.json"), "not valid JSON")
    assert "BI-RADS 5" in cli("render", good).out
    fhir = json.loads(cli("render", good, "--format", "fhir").out)
    assert fhir["resourceType"] == "Bundle"
    assert_refused(cli("render", good, "--format", "pdf"), "--format")
    assert_refused(cli("render", tmp_path / "broken.json"), "not valid JSON")


def test_rendering_a_stored_draft_keeps_what_drafting_said_of_its_study(tmp_path, cli, parsed):
    """Checking a report again cannot judge its study (drafted with --force, unlike the
    training studies), so those notes stay in every output, and fresh problems join them."""
    from reportgen.report import revalidate
    from reportgen.report.schema import STUDY_NOTE, Problem

    note = Problem(
        severity="warning",
        where=STUDY_NOTE,
        rule="fitness",
        message="drafted with --force: a pelvis study; this report is not meaningful",
    )
    forced = parsed.model_copy(deep=True)
    forced.validation.problems.insert(0, note)
    stored = tmp_path / "forced.json"
    stored.write_text(forced.to_json())
    assert "this report is not meaningful" in cli("render", stored).out
    edited = parsed.model_copy(deep=True)  # an edit carries no notes of its own
    del edited.fields["fgt_amount"]
    again = revalidate(edited, drafted=forced)
    assert again.problems[0] == note and not again.valid
    assert any(p.where == "fields.fgt_amount" for p in again.problems)
