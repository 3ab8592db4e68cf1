"""Free-text parser: synonyms, negation, uncertainty, findings, round trip with the renderer."""

from __future__ import annotations

import json

import pytest
from conftest import assert_refused

from reportgen.data import read_manifest
from reportgen.render import render_text
from reportgen.report import Report, build_report, load_template
from reportgen.report.compare import slots
from reportgen.report.parse import parse_report
from reportgen.report.schema import Provenance, StudyRef
from reportgen.synth import SynthOptions, synth_dataset


def _fields(report):
    return {k: v.value for k, v in report.fields.items()}


def _finding(report, i=0):
    return {k: v.value for k, v in report.findings[i].fields.items()}


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        (
            "Endometrial carcinoma measuring 3 cm with deep myometrial invasion.",
            "en",
            "myometrial_invasion_deep",
        ),
        ("子宫内膜癌，大小约3cm，深肌层侵犯。", "zh", "myometrial_invasion_deep"),
        ("子宫内膜癌，大小约3cm，肌层浸润≥1/2。", "zh", "myometrial_invasion_deep"),
        (
            "Endometrial carcinoma measuring 3 cm. No deep myometrial invasion.",
            "en",
            "myometrial_invasion_superficial",
        ),
        ("子宫内膜癌，大小约3cm。未见深肌层浸润。", "zh", "myometrial_invasion_superficial"),
        (
            "Endometrial tumour of 30 mm with superficial myometrial invasion.",
            "en",
            "myometrial_invasion_superficial",
        ),
    ],
)
def test_synonyms_and_negation_of_myometrial_invasion(text, lang, expected):
    report = parse_report(text, "figo_endometrium_2023", lang)
    assert _finding(report)["myometrial_invasion"] == expected
    assert _finding(report)["size_mm"] == 30


@pytest.mark.parametrize(
    ("sentence", "lang", "value"),
    [
        ("No axillary adenopathy.", "en", False),
        ("Axillary adenopathy is not seen.", "en", False),
        ("There is no evidence of axillary lymphadenopathy.", "en", False),
        ("Enlarged axillary lymph nodes are present.", "en", True),
        ("未见腋窝淋巴结肿大。", "zh", False),
        ("腋窝淋巴结肿大：无。", "zh", False),
        ("可见腋窝淋巴结肿大。", "zh", True),
        ("", "en", False),  # not mentioned: absent
    ],
)
def test_boolean_findings_with_negation(sentence, lang, value):
    report = parse_report(f"Findings:\n{sentence}\nBI-RADS 1.", "birads_mri", lang)
    assert _fields(report)["axillary_adenopathy"] is value


def test_uncertain_mentions_keep_their_value_with_lower_confidence():
    report = parse_report("Possible axillary adenopathy.", "birads_mri", "en")
    assert report.fields["axillary_adenopathy"].value is True
    assert report.fields["axillary_adenopathy"].confidence == 0.5
    report = parse_report("考虑盆腔淋巴结转移。宫颈癌，大小约2cm。", "figo_cervix_2018", "zh")
    assert (
        report.fields["pelvic_nodes"].value is True
        and report.fields["pelvic_nodes"].confidence == 0.5
    )


def test_findings_open_on_new_lesions_not_on_references_back():
    text = (
        "History: palpable mass, left breast.\n"
        "Findings:\n"
        "In the left breast at 2 o'clock, middle depth, there is an irregular mass measuring 1.8 x 1.2 cm. "
        "The mass has spiculated margins. The lesion shows washout kinetics.\n"
        "In the right breast at 10:00, anterior depth, there is a 6 mm oval mass with circumscribed margins. Finding category: BI-RADS 2.\n"
        "Impression: BI-RADS 5."
    )
    report = parse_report(text, "birads_mri", "en")
    assert len(report.findings) == 2
    first, second = _finding(report, 0), _finding(report, 1)
    assert (first["laterality"], first["clock"], first["size_mm"], first["margin"]) == (
        "left",
        "clock_2",
        18,
        "margin_spiculated",
    )
    assert first["kinetics_delayed"] == "delayed_washout"
    assert (second["laterality"], second["clock"], second["size_mm"], second["shape"]) == (
        "right",
        "clock_10",
        6,
        "shape_oval",
    )
    assert (
        report.derived["assessment"].value == "birads_5"
    )  # the impression's, not finding 2's category


def test_a_stated_assessment_that_contradicts_the_features_is_flagged():
    text = (
        "Left breast, 3 o'clock, middle depth: there is an irregular mass measuring 15 mm with spiculated margins, "
        "fast initial enhancement and a washout curve.\nImpression: BI-RADS 2."
    )
    report = parse_report(text, "birads_mri", "en")
    assert report.derived["assessment"].value == "birads_2"  # what the radiologist wrote is kept
    rules = {p.rule for p in report.validation.problems}
    assert "spiculated_washout_called_benign" in rules and not report.validation.valid


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("parse")
    return {
        d: read_manifest(
            synth_dataset(
                root / d, 4, SynthOptions(protocol="low_resolution", domain=d, seed=2718), workers=1
            )
        )
        for d in ("breast", "cervix", "endometrium")
    }


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_render_then_parse_gives_back_the_same_fields(small_sets, lang):
    for rows in small_sets.values():
        for row in rows:
            truth = Report.model_validate(row["report"])
            parsed = parse_report(render_text(truth, lang), truth.template.id, lang)
            assert [
                (s.where, s.truth, s.predicted)
                for s in slots(parsed, truth)
                if s.truth != s.predicted
            ] == [], row["id"]


def test_orads_round_trip():
    template = load_template("orads_mri")
    lesion = {
        "laterality": "right",
        "size_mm": 62,
        "composition": "composition_cystic_solid",
        "fluid": "fluid_hemorrhagic",
        "lipid": False,
        "solid_tissue": True,
        "dark_t2_dwi": False,
        "tic": "tic_intermediate_risk",
    }
    truth = build_report(
        template,
        {"peritoneal_implants": False, "ascites": True},
        [lesion],
        study=StudyRef(study_id="o"),
        provenance=Provenance(source="human"),
    )
    for lang in ("en", "zh"):
        parsed = parse_report(render_text(truth, lang), "orads_mri", lang)
        assert [s for s in slots(parsed, truth) if s.truth != s.predicted] == []
        assert parsed.derived["risk_score"].value == "orads_4"


def test_synthetic_free_text_parses_to_the_truth(small_sets):
    for rows in small_sets.values():
        for row in rows:
            truth = Report.model_validate(row["report"])
            for lang in ("en", "zh"):
                parsed = parse_report(row["text"][lang], truth.template.id, lang)
                wrong = [
                    (s.where, s.truth, s.predicted)
                    for s in slots(parsed, truth)
                    if s.truth != s.predicted
                ]
                assert not wrong, (row["id"], lang, wrong)


def test_parse_cli(tmp_path, cli):
    path = tmp_path / "r.txt"
    path.write_text("宫颈癌，最大径约2.5cm，宫旁浸润。未见盆腔淋巴结转移。", encoding="utf-8")
    result = cli("parse", path, "--template", "figo_cervix_2018")
    assert result.code == 0
    report = json.loads(result.out)
    assert report["derived"]["stage"]["value"] == "figo2018_IIB"
    assert_refused(cli("parse", path, "--template", "pirads"), "unknown template")
    empty = tmp_path / "e.txt"
    empty.write_text("  \n")
    assert_refused(cli("parse", empty, "--template", "birads_mri"), "empty")
    assert_refused(cli("parse", tmp_path / "nope.txt", "--template", "birads_mri"), "no such file")


def test_an_organ_size_is_not_the_tumour_size():
    text = (
        "The uterus is anteverted and measures 9.8 x 5.6 x 6.0 cm. An intermediate-T2 mass "
        "distends the endometrial cavity, measuring 4.2 x 2.5 x 3.0 cm. No pelvic "
        "lymphadenopathy."
    )
    report = parse_report(text, "figo_endometrium_2023", "en")
    assert report.findings[0].fields["size_mm"].value == 42
    organ_only = parse_report("The uterus measures 9.8 x 5.6 x 6.0 cm.", "figo_endometrium_2023")
    assert organ_only.findings[0].fields["size_mm"].value == 98  # no lesion measured: kept


def test_a_cyst_with_solid_tissue_is_cystic_solid_as_the_lexicon_defines():
    text = (
        "Right adnexa: a multilocular cystic mass measuring 8.1 cm. It contains simple fluid, "
        "with a 2.2 cm solid component along its wall. No ascites."
    )
    finding = parse_report(text, "orads_mri", "en").findings[0].fields
    assert finding["solid_tissue"].value is True
    assert finding["composition"].value == "composition_cystic_solid"
    plain = parse_report("Right adnexa: a multilocular cystic mass of 8 cm.", "orads_mri")
    assert plain.findings[0].fields["composition"].value == "composition_multilocular_cyst"


def test_a_template_implication_must_name_a_finding_field_and_one_of_its_values(tmp_path):
    import yaml

    from reportgen.errors import ConfigError
    from reportgen.report.template import TEMPLATE_DIR

    raw = yaml.safe_load((TEMPLATE_DIR / "orads_mri.yaml").read_text())
    raw["findings"]["implies"][0]["set"]["value"] = "composition_made_up"
    broken = tmp_path / "orads_mri.yaml"
    broken.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="not one of its values"):
        load_template(str(broken))


@pytest.mark.parametrize(
    "text, template, field, value",
    [
        ("Tumour extends into the upper third of the vagina.", "figo_cervix_2018",
         "vaginal_involvement", "vagina_upper_two_thirds"),
        ("Two enlarged right external iliac lymph nodes.", "figo_cervix_2018", "pelvic_nodes", True),
        ("Several peritoneal nodules in the right paracolic gutter.", "orads_mri",
         "peritoneal_implants", True),
    ],
)  # fmt: skip
def test_real_report_phrasings(text, template, field, value):
    assert parse_report(text, template, "en").fields[field].value == value


@pytest.mark.parametrize(
    "text, template, field, value",
    [
        ("The tumour is seen extending into the cervical stroma.", "figo_endometrium_2023",
         "cervical_stromal_invasion", True),
        ("At the right cornu the tumour breaches the serosa.", "figo_endometrium_2023",
         "serosal_involvement", True),
        ("Small amount of physiological free fluid only.", "orads_mri", "ascites", False),
        ("Small volume free fluid in the pouch of Douglas.", "orads_mri", "ascites", True),
    ],
)  # fmt: skip
def test_pelvic_report_phrasings_from_outside_the_project(text, template, field, value):
    assert parse_report(text, template, "en").fields[field].value == value


def test_a_copula_inside_a_term_a_cystic_solid_mass_and_an_exam_title():
    endometrium = parse_report(
        "FINDINGS: A 3 cm endometrial tumour; myometrial invasion is less than 50%.",
        "figo_endometrium_2023",
    )
    invasion = endometrium.findings[0].fields["myometrial_invasion"].value
    assert invasion == "myometrial_invasion_superficial"
    ovary = parse_report(
        "MRI PELVIS - ADNEXAL MASS CHARACTERISATION\n"
        "FINDINGS: A cystic-solid mass is seen in the left adnexa, measuring 5.1 cm.",
        "orads_mri",
    )
    [lesion] = ovary.findings  # the title's "adnexal mass" opens no lesion of its own
    assert lesion.fields["composition"].value == "composition_cystic_solid"
    assert lesion.fields["laterality"].value == "left" and lesion.fields["size_mm"].value == 51


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_side_two_fields_offer_goes_to_the_field_its_sentence_names(lang):
    """FIGO cervix states two sides (parametrial invasion, metastatic nodes) from the same
    right/left/bilateral values: each sentence's own anchor decides, and the short axis
    of the largest node is read where the sentence names it, never as the tumour size."""
    text = {
        "en": "Cervical tumour measuring 32 mm. Left parametrial invasion. Right pelvic lymph "
        "node metastasis. The largest metastatic node measures 16 mm in short axis. "
        "No para-aortic lymph node metastasis.",
        "zh": "宫颈肿瘤，大小约32mm。左侧宫旁浸润。右侧盆腔淋巴结转移。最大转移淋巴结短径约16mm。"
        "未见腹主动脉旁淋巴结转移。",
    }[lang]
    report = parse_report(text, "figo_cervix_2018", lang)
    values = {k: v.value for k, v in report.fields.items()}
    assert values["parametrial_invasion"] is True and values["parametrial_side"] == "left"
    assert values["pelvic_nodes"] is True and values["node_side"] == "right"
    assert values["node_short_axis_mm"] == 16
    assert report.findings[0].fields["size_mm"].value == 32
