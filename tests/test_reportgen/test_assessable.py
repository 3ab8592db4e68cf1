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
