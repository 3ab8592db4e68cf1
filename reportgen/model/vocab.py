"""The report model's vocabulary: template tokens first, then sentencepiece pieces.

Template tokens make choosing a value a pointer into the template's predefined terms:
one token per field (`<f:margin>`), per allowed concept (`<v:margin_spiculated>`), per
number on the field's grid (`<n:12>`), plus structure (`<finding>`, `<findings_end>`,
`<comment>`, `<absent>`, `<true>`, `<false>`). The free-text comment is written in
sentencepiece pieces, offset after the template tokens.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from reportgen.report.template import FieldSpec, Template

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
FINDING, FINDINGS_END, COMMENT = "<finding>", "<findings_end>", "<comment>"
ABSENT, TRUE, FALSE = "<absent>", "<true>", "<false>"
STRUCTURE = (PAD, BOS, EOS, FINDING, FINDINGS_END, COMMENT, ABSENT, TRUE, FALSE)


def field_token(field_id: str) -> str:
    return f"<f:{field_id}>"


def value_token(concept_id: str) -> str:
    return f"<v:{concept_id}>"


def number_token(text: str) -> str:
    return f"<n:{text}>"


def number_grid(spec: FieldSpec) -> list[str]:
    """Every value a number field may take, as text, on its decimals' grid."""
    if spec.range is None:
        raise ValueError(f"number field {spec.id!r} needs a range to be generated")
    lo, hi = spec.range
    scale = 10**spec.decimals
    return [
        f"{k / scale:.{spec.decimals}f}" for k in range(round(lo * scale), round(hi * scale) + 1)
    ]


def template_tokens(template: Template) -> list[str]:
    """The template's tokens in a stable order (structure, fields, values, numbers); a
    field only a reader states (`FieldSpec.drafted` false) has none."""
    tokens: list[str] = list(STRUCTURE)
    specs = [f for f in [*template.fields, *template.finding_fields] if f.drafted]
    tokens += [field_token(f.id) for f in specs if f.type != "text"]
    derived = [*template.derived_finding, *template.derived_report]
    tokens += [field_token(d.id) for d in derived]
    values: list[str] = []
    numbers: list[str] = []
    for spec in specs:
        if spec.type == "enum":
            values += [v for v in spec.values if v not in values]
        elif spec.type == "number":
            numbers += [n for n in number_grid(spec) if n not in numbers]
    for spec in derived:
        values += [v for v in spec.values if v not in values]
    tokens += [value_token(v) for v in values]
    tokens += [number_token(n) for n in sorted(numbers, key=float)]
    return tokens


@dataclass
class ReportVocab:
    """Template tokens + sentencepiece pieces, with ids the decoder uses."""

    template_id: str
    tokens: list[str]
    sp_model: bytes | None = None  # serialized sentencepiece model (comment text)
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _sp: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def for_template(cls, template: Template, sp_model: bytes | None = None) -> ReportVocab:
        return cls(template.id, template_tokens(template), sp_model)

    # -- ids ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens) + self.sp_size

    def id(self, token: str) -> int:
        return self._index[token]

    def token(self, index: int) -> str:
        if index < len(self.tokens):
            return self.tokens[index]
        return f"<sp:{index - len(self.tokens)}>"

    @property
    def pad_id(self) -> int:
        return self._index[PAD]

    @property
    def bos_id(self) -> int:
        return self._index[BOS]

    @property
    def eos_id(self) -> int:
        return self._index[EOS]

    # -- sentencepiece (comment text) --------------------------------------------------------
    @property
    def sp(self):
        if self._sp is None and self.sp_model:
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_proto=self.sp_model)
        return self._sp

    @property
    def sp_size(self) -> int:
        return self.sp.get_piece_size() if self.sp is not None else 0

    @property
    def sp_offset(self) -> int:
        return len(self.tokens)

    def encode_text(self, text: str) -> list[int]:
        if not text or self.sp is None:
            return []
        return [self.sp_offset + i for i in self.sp.encode(normalise_text(text))]

    def decode_text(self, ids: list[int]) -> str:
        if self.sp is None:
            return ""
        return self.sp.decode([i - self.sp_offset for i in ids if i >= self.sp_offset])

    # -- persistence -------------------------------------------------------------------------
    def files(self) -> dict[str, bytes]:
        """The files a model directory holds for this vocabulary."""
        out = {
            "vocab.json": json.dumps(
                {"template": self.template_id, "tokens": self.tokens}, indent=1
            ).encode()
        }
        if self.sp_model:
            out["spm.model"] = self.sp_model
        return out

    @classmethod
    def load(cls, folder: Path) -> ReportVocab:
        data = json.loads((folder / "vocab.json").read_text())
        sp_path = folder / "spm.model"
        return cls(
            data["template"], data["tokens"], sp_path.read_bytes() if sp_path.exists() else None
        )


def normalise_text(text: str) -> str:
    """What sentencepiece's `nmt_nfkc` normaliser does, with Python's tables: NFKC (full-
    width forms to ASCII, compatibility characters folded), every whitespace character
    a space, control characters dropped. Tokenises the bundled model's reports exactly
    as its NFKC table did (checked on 242 rendered en/zh reports)."""
    text = re.sub(r"\s", " ", unicodedata.normalize("NFKC", text))
    return "".join(c for c in text if unicodedata.category(c) != "Cc")


SPECIAL_PIECES = 8  # <unk> and the word-boundary piece, with room to spare


def train_sentencepiece(texts: list[str], vocab_size: int = 256) -> bytes | None:
    """A small unigram model over the training reports' text (None when there is none).

    Text is normalised here and in `encode_text` (`normalise_text`), and the model's own
    normaliser is the identity: sentencepiece's NFKC table would add 240 KB to every
    model folder, which the bundled model's 20 MB budget cannot spare."""
    import io

    import sentencepiece as spm

    lines = [normalise_text(line) for text in texts for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    # every character must be a piece (character_coverage 1.0): a lexicon whose Chinese
    # terms hold more distinct characters than `vocab_size` gets one piece per character
    characters = len(set("".join(lines)))
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buffer,
        vocab_size=max(vocab_size, characters + SPECIAL_PIECES),
        hard_vocab_limit=False,  # small corpora have fewer pieces than asked for
        character_coverage=1.0,  # Chinese reports: keep every character
        model_type="unigram",
        normalization_rule_name="identity",
        bos_id=-1,
        eos_id=-1,
        minloglevel=2,
    )
    return buffer.getvalue()
