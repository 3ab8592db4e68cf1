"""The report vocabulary's text model: small, and normalising as NFKC did."""

from __future__ import annotations

from sentencepiece import sentencepiece_model_pb2 as pb

from reportgen.model.vocab import ReportVocab, normalise_text, train_sentencepiece
from reportgen.report import load_template


def test_the_text_model_carries_no_normalisation_table_and_folds_full_width_forms():
    texts = [
        "Mass in the right breast, 7 o'clock, BI-RADS 4.",
        "右乳7点钟方向肿块，BI-RADS 4。",
    ] * 40
    model = train_sentencepiece(texts, vocab_size=64)
    proto = pb.ModelProto()
    proto.ParseFromString(model)
    assert proto.normalizer_spec.precompiled_charsmap == b""
    assert len(model) < 20_000
    vocab = ReportVocab.for_template(load_template("birads_mri"), model)
    assert vocab.encode_text("ＢＩ－ＲＡＤＳ　４") == vocab.encode_text("BI-RADS 4")
    assert vocab.encode_text("right\tbreast\n") == vocab.encode_text("right breast ")
    assert normalise_text("a\x07b") == "ab"


def test_a_lexicon_with_more_characters_than_pieces_still_trains():
    """Every character of the training reports is a piece (Chinese terms are kept whole):
    texts with 300 distinct characters train a 256-piece request into one that spells them
    all, where sentencepiece alone refused (the breast lexicon's management terms once
    passed 256)."""
    import sentencepiece as spm

    characters = [chr(0x4E00 + k) for k in range(300)]
    texts = ["".join(characters[k : k + 12]) for k in range(0, 300, 3)]
    model = spm.SentencePieceProcessor(model_proto=train_sentencepiece(texts, 256))
    assert model.get_piece_size() >= 300
    assert model.unk_id() not in model.encode("".join(characters))


def test_fields_only_a_reader_states_are_no_tokens_and_never_drafted():
    """A lexicon field a reader adds in the review form (`drafted: false`) is no token of
    the report model's vocabulary, so the bundled breast model, fit before those fields
    were added, keeps its vocabulary; the automaton never offers them and encodes a
    report that states them as if it did not."""
    import json

    from helpers.report_examples import BREAST, SPICULATED

    from reportgen.model.generate import BUNDLED_MODEL
    from reportgen.model.grammar import TemplateGrammar
    from reportgen.model.vocab import template_tokens
    from reportgen.report import build_report
    from reportgen.report.schema import Provenance, StudyRef

    template = load_template("birads_mri")
    reader_only = [f.id for f in template.fields if not f.drafted]
    assert {"intramammary_lymph_node", "implant_material", "non_enhancing_mass"} <= set(reader_only)
    tokens = template_tokens(template)
    assert not any(f"<f:{k}>" in tokens for k in reader_only)
    assert "<v:implant_silicone>" not in tokens
    bundled = json.loads((BUNDLED_MODEL / "vocab.json").read_text())["tokens"]
    assert tokens == bundled

    grammar = TemplateGrammar(template, ReportVocab.for_template(template))

    def report(extra: dict):
        return build_report(
            template,
            {**BREAST, **extra},
            [SPICULATED],
            study=StudyRef(study_id="s"),
            provenance=Provenance(source="synthetic"),
        )

    plain = grammar.encode(report({}))
    assert grammar.encode(report({"implant_material": "implant_silicone"})) == plain
    state = grammar.parse(plain[1:])
    assert state.done and "implant_material" not in state.fields
