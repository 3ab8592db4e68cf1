"""What a study cannot show is never stated: no kinetics or BPE without DCE, no
diffusion without DWI/ADC; the text says so; evaluation holds the truth to the same rule."""

from __future__ import annotations

from test_templates import BREAST, SPICULATED

from reportgen.model.grammar import TemplateGrammar
from reportgen.model.vocab import ReportVocab
from reportgen.render.text import render_text
from reportgen.report import build_report, load_template, validate_report
from reportgen.report.assessable import not_assessable, restrict_to_study
from reportgen.report.schema import Provenance, StudyRef

ALL = ["T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3"]
NO_DCE = ["T2W", "DWI", "ADC"]
FIELDS = BREAST
MASS = SPICULATED
DCE_FIELDS = {
    "kinetics_initial",
    "kinetics_delayed",
    "bpe_level",
    "bpe_symmetry",
    "internal_enhancement",
    "nme_distribution",
    "nme_pattern",
    # a reader's (not drafted): a mass that does not enhance, the ducts before contrast
    "non_enhancing_mass",
    "ductal_precontrast_high_signal",
}


def _report(sequences, fields=FIELDS, finding=MASS):
    return build_report(
        load_template("birads_mri"),
        fields,
        [finding],
        study=StudyRef(study_id="t", sequences_used=sequences),
        provenance=Provenance(source="synthetic"),
    )


def test_without_dce_the_dce_fields_are_not_assessable():
    template = load_template("birads_mri")
    assert not_assessable(template, ALL) == frozenset()
    assert not_assessable(template, NO_DCE) == DCE_FIELDS
    assert not_assessable(template, ["T2W"]) == DCE_FIELDS | {"diffusion"}
    assert not_assessable(template, []) == frozenset()  # sequences unknown: no restriction


def test_stating_kinetics_without_dce_is_an_error_and_leaving_them_out_is_not():
    stated = _report(NO_DCE)
    assert not stated.validation.valid
    wheres = {p.where for p in stated.validation.problems if p.severity == "error"}
    assert "findings[0].kinetics_delayed" in wheres and "fields.bpe_level" in wheres
    honest = _report(
        NO_DCE,
        {k: v for k, v in FIELDS.items() if k not in DCE_FIELDS},
        {k: v for k, v in MASS.items() if k not in DCE_FIELDS},
    )
    assert validate_report(honest, load_template("birads_mri")).valid
    # With DCE acquired the same omission is a missing required field.
    full = honest.model_copy(update={"study": StudyRef(study_id="t", sequences_used=ALL)})
    assert not validate_report(full, load_template("birads_mri")).valid


def test_the_automaton_never_writes_kinetics_for_a_study_without_dce():
    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    grammar = TemplateGrammar(template, vocab)
    full_ids = grammar.encode(_report(ALL))[1:]
    kinetics = vocab.id("<f:kinetics_initial>")
    assert kinetics in full_ids
    restricted = grammar.for_sequences(NO_DCE)
    # Walk the automaton greedily: at every step the kinetics field token is not allowed.
    ids: list[int] = []
    state = restricted.parse(ids)
    while not state.done:
        assert kinetics not in state.allowed
        assert vocab.id("<f:bpe_level>") not in state.allowed
        ids.append(min(state.allowed))
        state = restricted.parse(ids)
    assert grammar.for_sequences(ALL) is grammar


def test_the_text_says_what_could_not_be_assessed():
    honest = _report(
        NO_DCE,
        {k: v for k, v in FIELDS.items() if k not in DCE_FIELDS},
        {k: v for k, v in MASS.items() if k not in DCE_FIELDS},
    )
    text = render_text(honest, "en")
    assert "Not assessable without DCE images" in text
    assert "Delayed phase" not in text
    assert "缺少动态增强序列" in render_text(honest, "zh")
    assert "Not assessable" not in render_text(_report(ALL), "en")


def test_the_truth_is_held_to_what_the_sequences_show():
    truth = _report(ALL)
    seen = restrict_to_study(truth, load_template("birads_mri"), NO_DCE)
    assert "kinetics_initial" not in seen.findings[0].fields and "bpe_level" not in seen.fields
    assert "kinetics_initial" in truth.findings[0].fields  # the original is untouched
    assert restrict_to_study(truth, load_template("birads_mri"), ALL) is truth


BENIGN_MASS = {
    **{k: v for k, v in MASS.items() if k not in DCE_FIELDS},
    "shape": "shape_oval",
    "margin": "margin_circumscribed",
    "t2_signal": "t2_hyperintense",
    "diffusion": "diffusion_not_restricted",
}
NME = {
    "type": "non_mass_enhancement",
    "laterality": "right",
    "clock": "clock_10",
    "depth": "depth_anterior",
    "size_mm": 22,
    "t2_signal": "t2_isointense",
    "diffusion": "diffusion_not_restricted",
}
WITHOUT_DCE = {k: v for k, v in FIELDS.items() if k not in DCE_FIELDS}


def test_enhancement_defined_findings_cannot_be_written_or_stated_without_dce():
    """A non-mass enhancement and a focus are seen only on a contrast series: the automaton
    never offers them for a study without DCE, and a report stating one is invalid."""
    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    grammar = TemplateGrammar(template, vocab)
    nme, focus, mass = (vocab.id(f"<v:{v}>") for v in ("non_mass_enhancement", "focus", "mass"))
    type_field, finding = vocab.id("<f:type>"), vocab.id("<finding>")
    for sequences, offered in ((NO_DCE, False), (ALL, True)):
        restricted = grammar.for_sequences(sequences)
        ids: list[int] = []  # walk to the first finding's type value
        while not ids or ids[-1] != type_field:
            allowed = restricted.parse(ids).allowed
            ids.append(next((t for t in (type_field, finding) if t in allowed), min(allowed)))
        allowed = restricted.parse(ids).allowed
        assert mass in allowed and (nme in allowed) == offered and (focus in allowed) == offered
    stated = _report(NO_DCE, WITHOUT_DCE, NME)
    problems = [p for p in stated.validation.problems if p.where == "findings[0].type"]
    assert problems and "dce" in problems[0].message
    assert not [p for p in _report(ALL, FIELDS, {**NME, **_nme_dce()}).validation.problems
                if p.where == "findings[0].type"]  # fmt: skip


def _nme_dce() -> dict:
    return {
        "nme_distribution": "nme_focal",
        "nme_pattern": "nme_homogeneous",
        "kinetics_initial": "initial_slow",
        "kinetics_delayed": "delayed_persistent",
    }


def test_without_dce_only_suspicious_morphology_keeps_its_category_the_rest_is_incomplete():
    """BI-RADS 0 (incomplete: additional imaging) for a study without contrast, unless what it
    shows is already suspicious; with contrast the same benign mass is benign (category 2)."""
    assessment = {
        (name, tuple(seq)): _report(seq, fields, finding).derived["assessment"].value
        for name, fields, finding, seq in (
            ("benign", WITHOUT_DCE, BENIGN_MASS, NO_DCE),
            ("spiculated", WITHOUT_DCE, {k: v for k, v in MASS.items() if k not in DCE_FIELDS}, NO_DCE),
            ("benign", FIELDS, {**BENIGN_MASS, "internal_enhancement": "enhancement_homogeneous",
                                "kinetics_initial": "initial_slow", "kinetics_delayed": "delayed_persistent"}, ALL),
        )
    }  # fmt: skip
    assert assessment[("benign", tuple(NO_DCE))] == "birads_0"
    assert assessment[("spiculated", tuple(NO_DCE))] == "birads_5"
    assert assessment[("benign", tuple(ALL))] == "birads_2"
    honest = _report(NO_DCE, WITHOUT_DCE, BENIGN_MASS)
    assert (
        honest.validation.valid and honest.derived["management"].value == "mgmt_additional_imaging"
    )


def test_the_truth_without_dce_loses_what_only_contrast_shows_and_is_derived_again():
    """Scored against what the sequences show: the non-mass enhancement is not there to
    find, the assessment is what the rules give without contrast; a stated call stays."""
    template = load_template("birads_mri")
    truth = build_report(
        template, FIELDS, [BENIGN_MASS | {"internal_enhancement": "enhancement_homogeneous",
                                          "kinetics_initial": "initial_slow",
                                          "kinetics_delayed": "delayed_persistent"},
                           {**NME, **_nme_dce()}],
        study=StudyRef(study_id="t", sequences_used=ALL), provenance=Provenance(source="synthetic"),
    )  # fmt: skip
    seen = restrict_to_study(truth, template, NO_DCE)
    assert [f.id for f in seen.findings] == ["F1"]  # the NME is gone, the mass keeps its id
    assert seen.derived["assessment"].value == "birads_0"
    assert truth.derived["assessment"].value != "birads_0"  # the original is untouched
    called = truth.model_copy(deep=True)
    called.derived["assessment"] = called.derived["assessment"].model_copy(
        update={"value": "birads_2"}
    )
    assert restrict_to_study(called, template, NO_DCE).derived["assessment"].value == "birads_2"


def _adnexal(sequences, finding, implants=False):
    return build_report(
        load_template("orads_mri"),
        {"peritoneal_implants": implants, "ascites": False},
        [{"laterality": "left", "size_mm": 60, "lipid": False, **finding}],
        study=StudyRef(study_id="t", sequences_used=sequences),
        provenance=Provenance(source="synthetic"),
    )


def test_an_adnexal_lesion_with_solid_tissue_is_o_rads_0_without_contrast():
    """O-RADS MRI defines solid tissue by its enhancement: without DCE none is stated, and a
    cystic-solid lesion whose solid part is not dark on T2 and DWI is incomplete (0); dark
    T2/dark DWI solid tissue stays 2; with contrast the curve scores it."""
    solid = {"composition": "composition_cystic_solid", "dark_t2_dwi": False}
    incomplete = _adnexal(NO_DCE, solid)
    assert "solid_tissue" not in incomplete.findings[0].fields
    assert incomplete.findings[0].derived["score"].value == "orads_0"
    assert incomplete.derived["risk_score"].value == "orads_0"
    assert incomplete.validation.valid, incomplete.validation.problems
    text = render_text(incomplete, "en")
    assert "nhancing solid tissue is present" not in text and "O-RADS MRI 0" in text
    dark = _adnexal(NO_DCE, {**solid, "dark_t2_dwi": True})
    assert dark.findings[0].derived["score"].value == "orads_2"
    enhancing = _adnexal(ALL, {**solid, "solid_tissue": True, "fluid": "fluid_simple",
                               "tic": "tic_high_risk"})  # fmt: skip
    assert enhancing.findings[0].derived["score"].value == "orads_5"
    # a multilocular cyst (no solid part) scores 3 with or without contrast
    cyst = {"composition": "composition_multilocular_cyst"}
    assert _adnexal(NO_DCE, cyst).findings[0].derived["score"].value == "orads_3"
    assert (
        _adnexal(ALL, {**cyst, "solid_tissue": False, "fluid": "fluid_simple"})
        .findings[0]
        .derived["score"]
        .value
        == "orads_3"
    )
    # implants still make the study 5
    assert _adnexal(NO_DCE, solid, implants=True).derived["risk_score"].value == "orads_5"
