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
