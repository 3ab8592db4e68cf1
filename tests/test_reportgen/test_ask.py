"""Asking a study: questions mapped to template fields through the ontology, answered from
the drafted report only, refused when out of scope, never about what the study cannot show."""

from __future__ import annotations

import json

import pytest
from helpers.report_examples import BREAST, SPICULATED

from reportgen.report import build_report, load_template
from reportgen.report.ask import Asker, read_question
from reportgen.report.schema import Provenance, StudyRef

FULL_MRI = ["T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3"]
OVAL = {
    **SPICULATED,
    "laterality": "right",
    "clock": "clock_10",
    "size_mm": 9,
    "shape": "shape_oval",
    "margin": "margin_circumscribed",
    "internal_enhancement": "enhancement_homogeneous",
    "kinetics_initial": "initial_slow",
    "kinetics_delayed": "delayed_persistent",
    "t2_signal": "t2_hyperintense",
    "diffusion": "diffusion_not_restricted",
}


def _report(template_id, fields, findings, sequences=FULL_MRI, confidences=None):
    return build_report(
        load_template(template_id),
        fields,
        findings,
        study=StudyRef(study_id="t", sequences_used=list(sequences)),
        provenance=Provenance(source="synthetic"),
        confidences=confidences,
    )


@pytest.fixture(scope="module")
def breast():
    return Asker(_report("birads_mri", BREAST, [SPICULATED, OVAL]))


@pytest.mark.parametrize(
    ("question", "lang", "answer", "field"),
    [
        ("Is there a suspicious lesion in the left breast?", "en", True, "laterality"),
        ("Is there a suspicious lesion in the right breast?", "en", False, "laterality"),
        ("Is there a suspicious mass on the right side?", "en", False, "laterality"),
        ("Is the margin spiculated?", "en", True, "margin"),
        ("Does any mass show washout?", "en", True, "kinetics_delayed"),
        ("Is this BI-RADS 5?", "en", True, "assessment"),
        ("Is this BI-RADS 3?", "en", False, "assessment"),
        ("Is there axillary adenopathy?", "en", False, "axillary_adenopathy"),
        ("Is there no axillary adenopathy?", "en", True, "axillary_adenopathy"),
        ("左侧乳腺有可疑病灶吗？", "zh", True, "laterality"),
        ("右侧乳腺有可疑病灶吗？", "zh", False, "laterality"),
        ("有腋窝淋巴结肿大吗？", "zh", False, "axillary_adenopathy"),
    ],
)
def test_yes_no_questions_rest_on_the_field_the_ontology_names(
    breast, question, lang, answer, field
):
    got = breast.answer(question, lang)
    assert got.status == "answered" and got.form == "yes_no", got
    assert got.answer is answer and got.field_id == field


def test_counts_sizes_sides_and_categories_come_from_the_findings(breast):
    assert breast.answer("How many masses are there?").answer == 2
    assert breast.answer("How many lesions are in the right breast?").answer == 1
    size = breast.answer("How large is the mass in the right breast?")
    assert size.answer == 9.0 and size.evidence == [{"finding": 2}]
    assert breast.answer("How large is the lesion?").answer == 17.0  # the largest
    assert breast.answer("Is the mass larger than 1.5 cm?").answer is True
    assert breast.answer("Is the lesion in the right breast smaller than 5 mm?").answer is False
    sides = breast.answer("Which side is the lesion on?")
    assert sides.answer == ["left", "right"] and sides.text == "left; right"
    category = breast.answer("What is the BI-RADS category?")
    assert category.answer == "birads_5" and category.field_id == "assessment"
    assert breast.answer("肿块多大？", "zh").answer == 17.0


def test_probability_follows_the_drafted_confidence():
    asker = Asker(
        _report("birads_mri", {**BREAST, "axillary_adenopathy": True}, [SPICULATED],
                confidences={"axillary_adenopathy": 0.8})
    )  # fmt: skip
    yes = asker.answer("Is there axillary adenopathy?")
    assert yes.answer is True and yes.probability == pytest.approx(0.8)
    no = asker.answer("Is there no axillary adenopathy?")
    assert no.answer is False and no.probability == pytest.approx(0.8)  # P(the answer given)


def test_nothing_is_answered_that_the_study_cannot_show():
    asker = Asker(
        _report("birads_mri", {"fgt_amount": "fgt_scattered", "axillary_adenopathy": False,
                               "skin_thickening": False},
                [{k: v for k, v in SPICULATED.items()
                  if k not in ("internal_enhancement", "kinetics_initial", "kinetics_delayed")}],
                sequences=["T2W", "DWI", "ADC"])
    )  # fmt: skip
    for question in (
        "What is the internal enhancement of the mass?",
        "Does the mass show washout?",
        "Is there non-mass enhancement?",
        "What is the background parenchymal enhancement?",
    ):
        got = asker.answer(question)
        assert got.status == "not_assessable" and got.answer is None, (question, got)
        assert "cannot show" in got.text
    assert asker.answer("Is the margin spiculated?").answer is True  # T2W shows it


OUT_OF_SCOPE = [
    "What is the weather today?",
    "Who referred the patient?",
    "What is the patient's name?",
    "How old is she?",
    "Is the prostate enlarged?",
    "Is there a brain tumour?",
    "Should the patient stop smoking?",
    "What time is the appointment?",
    "Is the liver cirrhotic?",
    "Does the patient have diabetes?",
    "今天天气怎么样？",
    "患者叫什么名字？",
]


@pytest.mark.parametrize("template_id", ["birads_mri", "figo_cervix_2018", "orads_mri"])
def test_questions_outside_the_template_are_refused_with_what_can_be_asked(template_id):
    template = load_template(template_id)
    for question in OUT_OF_SCOPE:
        lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in question) else "en"
        assert read_question(question, template, lang) is None, question


def test_pelvic_and_pancreas_questions_map_to_their_criteria():
    cervix = load_template("figo_cervix_2018")
    assert read_question("Does the tumour reach the pelvic sidewall?", cervix).fields == (
        "pelvic_sidewall",
    )
    assert read_question("Are the pelvic lymph nodes involved?", cervix).fields == ("pelvic_nodes",)
    assert read_question("肿瘤是否侵犯盆壁？", cervix, "zh").fields == ("pelvic_sidewall",)
    pancreas = load_template("pancreas_ct")
    sma = read_question("Is the SMA involved?", pancreas)
    assert sma.form == "yes_no" and sma.fields == ("sma_contact",)
    vessels = read_question("Which vessels are involved?", pancreas)
    assert vessels.form == "value" and len(vessels.fields) == 5


def test_a_kind_of_what_a_field_asks_and_a_group_of_its_values_are_asked_by_it():
    """ "The parametrium" asks the endometrium template's vaginal-or-parametrial field (the
    parametrium is the site of one of its kinds), "the rectum" its bowel field, and
    "stage III" whether the stage is any of its substages."""
    endometrium = load_template("figo_endometrium_2023")
    asks = lambda q: read_question(q, endometrium)  # noqa: E731
    assert asks("Does the tumour reach the parametrium?").fields == (
        "vaginal_or_parametrial_involvement",
    )
    assert asks("Is the rectum involved?").fields == ("bowel_mucosa",)
    assert asks("Is the serosa breached?").fields == ("serosal_involvement",)
    assert asks("Is the cervical stroma invaded?").fields == ("cervical_stromal_invasion",)
    stage_three = asks("Is it stage III?")
    assert stage_three.fields == ("stage",) and "figo2023_IIIC1" in stage_three.value
    fields = {"pelvic_nodes": True, "cervical_stromal_invasion": False}
    report = _report("figo_endometrium_2023", fields, [{"size_mm": 30}], ["T2W", "DWI", "ADC"])
    assert report.derived["stage"].value == "figo2023_IIIC1"
    asker = Asker(report)
    assert asker.answer("Is it stage III?").answer is True
    assert asker.answer("Is it confined to the uterus, stage I?").answer is False
    assert asker.answer("Is this IIIC1?").answer is True


def test_pancreas_answers_name_the_vessels_and_follow_the_rules():
    from test_pancreas_template import MASS, NO_SPREAD

    report = _report(
        "pancreas_ct",
        NO_SPREAD,
        [{**MASS, "sma_contact": "sma_contact_le180", "pv_contact": "pv_contact_gt180"}],
        sequences=["CT_PANC", "CT_PV"],
    )
    asker = Asker(report)
    assert asker.answer("Is the SMA involved?").answer is True
    assert asker.answer("Is the celiac axis involved?").answer is False
    which = asker.answer("Which vessels are involved?")
    assert which.text == "superior mesenteric artery; main portal vein"
    assert asker.answer("Is the tumour resectable?").answer is False
    assert asker.answer("What is the resectability?").answer == "resectability_borderline"
    assert asker.answer("Is the resectability status stated?").status == "answered"  # derived
    assert asker.answer("Is the pancreatic mass larger than 2 cm?").answer is True
    plain = Asker(_report("pancreas_ct", {"duct_dilatation": True, "biliary_dilatation": False,
                                          "ascites": False, "regional_nodes": False,
                                          "nonregional_nodes": False}, [], sequences=["CT"]))  # fmt: skip
    assert plain.answer("Is the SMA involved?").status == "not_assessable"
    assert plain.answer("Are there liver metastases?").status == "not_assessable"
    assert plain.answer("Is the pancreatic duct dilated?").answer is True


def test_ask_on_the_command_line_from_a_report_and_from_a_study(tmp_path, cli):
    report = _report("birads_mri", BREAST, [SPICULATED])
    path = tmp_path / "report.json"
    path.write_text(report.to_json())
    got = cli("ask", path, "Is there a suspicious lesion in the left breast?", "--json")
    assert got.code == 0 and json.loads(got.out)["answer"] is True
    refused = cli("ask", path, "What is the weather today?")
    assert refused.code == 2 and "reads:" in refused.out
    study = tmp_path / "cervix"
    assert cli("synth", study, "--domain", "cervix", "--n", "1", "--seed", "61").code == 0
    folder = next(p for p in study.iterdir() if p.is_dir())
    drafted = cli(
        "ask", folder, "What is the FIGO stage?", "--template", "figo_cervix_2018", "--json"
    )
    assert drafted.code == 0, drafted.err
    answer = json.loads(drafted.out)
    assert answer["field_id"] == "stage" and answer["answer"].startswith("figo2018_")
