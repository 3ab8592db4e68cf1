"""The pancreas CT template: SAR/APA fields, NCCN resectability by rule, and what a
non-contrast CT cannot say.

Each case is an NCCN v2.2024 criterion ("Criteria defining resectability status"),
written from the guideline's table, not from the template's rules.
"""

from __future__ import annotations

import pytest

from reportgen.render.text import render_text
from reportgen.report import build_report, load_template
from reportgen.report.schema import Provenance, StudyRef

TEMPLATE = load_template("pancreas_ct")
CLEAR = {
    "sma_contact": "sma_contact_none",
    "celiac_contact": "celiac_contact_none",
    "cha_contact": "cha_contact_none",
    "smv_contact": "smv_contact_none",
    "pv_contact": "pv_contact_none",
}
MASS = {
    "type": "pancreatic_solid_mass",
    "location": "pancreas_head",
    "size_mm": 28,
    "attenuation": "hypoattenuating",
    "duct_cutoff": True,
    **CLEAR,
}
NO_SPREAD = {
    "duct_dilatation": True,
    "biliary_dilatation": True,
    "liver_metastases": False,
    "peritoneal_nodules": False,
    "ascites": False,
    "regional_nodes": False,
    "nonregional_nodes": False,
}
ENHANCED = ["CT_PANC", "CT_PV"]


def _report(fields: dict, findings: list[dict], sequences=ENHANCED):
    return build_report(
        TEMPLATE,
        fields,
        findings,
        study=StudyRef(study_id="t", sequences_used=list(sequences)),
        provenance=Provenance(source="synthetic"),
    )


def _status(report) -> str:
    return report.derived["resectability"].value


@pytest.mark.parametrize(
    ("contact", "status"),
    [
        ({}, "resectability_resectable"),  # no arterial contact, no venous contact
        (
            {"smv_contact": "smv_contact_le180", "vein_irregularity": False},
            "resectability_resectable",
        ),
        (
            {"smv_contact": "smv_contact_le180", "vein_irregularity": True},
            "resectability_borderline",
        ),
        ({"pv_contact": "pv_contact_gt180"}, "resectability_borderline"),
        ({"sma_contact": "sma_contact_le180"}, "resectability_borderline"),
        ({"cha_contact": "cha_contact_le180"}, "resectability_borderline"),
        ({"celiac_contact": "celiac_contact_le180"}, "resectability_borderline"),
        ({"sma_contact": "sma_contact_gt180"}, "resectability_locally_advanced"),
        ({"celiac_contact": "celiac_contact_gt180"}, "resectability_locally_advanced"),
        ({"smv_contact": "smv_contact_occlusion"}, "resectability_locally_advanced"),
    ],
)
def test_nccn_resectability_from_vessel_contact(contact, status):
    report = _report(NO_SPREAD, [{**MASS, **contact}])
    assert _status(report) == status
    assert report.validation.valid, report.validation.problems


@pytest.mark.parametrize("spread", ["liver_metastases", "peritoneal_nodules", "nonregional_nodes"])
def test_distant_disease_is_metastatic_whatever_the_vessels(spread):
    report = _report({**NO_SPREAD, spread: True}, [{**MASS, "sma_contact": "sma_contact_gt180"}])
    assert _status(report) == "resectability_metastatic"
    assert report.derived["management"].value == "pancreas_mgmt_systemic"


def test_regional_nodes_alone_do_not_change_resectability():
    report = _report({**NO_SPREAD, "regional_nodes": True}, [MASS])
    assert _status(report) == "resectability_resectable"
    assert report.derived["management"].value == "pancreas_mgmt_surgery"


def test_a_cystic_lesion_alone_has_no_resectability():
    cyst = {"type": "pancreatic_cystic_lesion", "location": "pancreas_tail", "size_mm": 14}
    report = _report({**NO_SPREAD, "duct_dilatation": False}, [cyst])
    assert _status(report) == "resectability_not_applicable"
    assert report.validation.valid, report.validation.problems
    assert "Superior mesenteric artery" not in render_text(report)


def test_without_contrast_no_mass_no_vessel_and_no_resectability_is_stated():
    plain = {
        k: v for k, v in NO_SPREAD.items() if k not in ("liver_metastases", "peritoneal_nodules")
    }
    report = _report(plain, [], sequences=["CT"])
    assert _status(report) == "resectability_not_assessable"
    assert report.derived["management"].value == "pancreas_mgmt_pancreatic_protocol_ct"
    assert report.validation.valid, report.validation.problems
    text = render_text(report)
    assert "cannot show or exclude a pancreatic mass" in text
    assert "No pancreatic mass." not in text and "No liver lesion" not in text
    zh = render_text(report, lang="zh")
    assert "平扫CT无法显示或排除胰腺肿块" in zh


def test_a_solid_mass_is_not_stated_from_a_non_contrast_ct():
    report = _report(NO_SPREAD, [MASS], sequences=["CT_NC"])
    assert not report.validation.valid
    assert any(
        "pancreatic_solid_mass is seen only on ct_contrast" in p.message
        for p in report.validation.problems
    )


def test_every_vessel_contact_is_coded_with_its_own_vessel():
    report = _report(NO_SPREAD, [{**MASS, "sma_contact": "sma_contact_le180"}])
    finding = report.findings[0]
    names = {finding.fields[k].concept.code for k in CLEAR}
    assert len(names) == len(CLEAR)  # five answers, five distinct codes
    text = render_text(report)
    assert "Superior mesenteric artery: contact of 180 degrees or less." in text
    assert "NCCN resectability: borderline resectable." in text


@pytest.mark.parametrize(
    ("duct", "bile_duct", "management"),
    [
        (True, False, "pancreas_mgmt_duct_workup"),
        (False, True, "pancreas_mgmt_duct_workup"),
        (False, False, "pancreas_mgmt_none"),
    ],
)
def test_a_dilated_duct_without_a_mass_is_worked_up_not_dismissed(duct, bile_duct, management):
    """The secondary sign of an isoattenuating tumour (SAR/APA 2014): no mass is seen, so
    there is no resectability, but the draft must not close the pathway."""
    fields = {**NO_SPREAD, "duct_dilatation": duct, "biliary_dilatation": bile_duct}
    report = _report(fields, [])
    assert _status(report) == "resectability_not_applicable"
    assert report.derived["management"].value == management
    assert report.validation.valid, report.validation.problems
    if management == "pancreas_mgmt_duct_workup":
        assert "endoscopic ultrasound" in render_text(report)
        assert "超声内镜" in render_text(report, lang="zh")
