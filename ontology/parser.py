"""Free text -> concept-coded mentions, sentence by sentence (the matching half of `reportgen parse`).

A spaCy pipeline per (language, lexicon): blank `en`/`zh` tokenisers; a concept matcher
(PhraseMatcher over every preferred term and synonym of the given concepts, plus given
whole sentences, such as a template's phrases for boolean fields); regular expressions
for sizes, clock-face positions and numeric categories ("BI-RADS 4", "O-RADS 3");
negspacy's Negex for negation and a second Negex instance, with hedge cues, for
uncertainty. Section headings decide whether a sentence is in the impression; history,
indication and technique lines are skipped.

What a mention means for a report (which field, which finding) is decided by
`reportgen.report.parse`, which reads the template; nothing here knows a template.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import negspacy.negation  # noqa: F401  (registers the "negex" factory)
import spacy
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from ontology.concepts import ConceptTable, default_concepts
from ontology.cues import NEGATION, UNCERTAINTY
from ontology.errors import TerminologyError

if not Span.has_extension("concepts"):
    Span.set_extension("concepts", default=())
    Span.set_extension("payload", default=None)

IMPRESSION_HEADERS = re.compile(
    r"^\s*(impression|conclusion|assessment|opinion|诊断意见|印象|结论|影像诊断|诊断)\s*[:：]?",
    re.I,
)
CONTEXT_HEADERS = re.compile(
    r"^\s*(clinical history|clinical information|clinical details|history|indication|technique|"
    r"comparison|protocol|exam|examination|procedure|"
    r"临床资料|临床病史|病史|临床诊断|检查方法|检查技术|扫描方法|对比|检查项目|检查部位)\s*[:：]",
    re.I,
)
# An exam title ("MRI PELVIS - ADNEXAL MASS CHARACTERISATION"): names the question, not a
# finding of this study; in capitals, with no colon to mark it as a heading.
EXAM_TITLE = re.compile(r"^\s*(?:MRI?|CT|US|PET)\b[^a-z:：]*$")
HEADING = re.compile(r"^[^.:：。]{1,60}[:：]\s*$")
FINDINGS_HEADERS = re.compile(r"^\s*(findings|影像所见|影像表现|所见)\s*[:：]?", re.I)
NUMBER = r"\d+(?:\.\d+)?"
SIZE_RE = re.compile(
    rf"({NUMBER})\s*(mm|cm|毫米|厘米)?((?:\s*[x×*]\s*{NUMBER}\s*(?:mm|cm|毫米|厘米)?){{0,2}})", re.I
)
CLOCK_RE = {
    "en": re.compile(r"(?<![\d/.])(1[0-2]|[1-9])\s*(?:o['’]?\s?clock|:00\b)", re.I),
    "zh": re.compile(r"(?<![\d/.])(1[0-2]|[1-9])\s*(?:点钟|点)"),
}
CATEGORY_RE = {
    "birads": re.compile(r"BI-?RADS\s*(?:category|分类|分级)?\s*[:：]?\s*([0-6])(?!\d)", re.I),
    "orads": re.compile(
        r"O-?RADS(?:\s*MRI)?\s*(?:score|评分|分类)?\s*[:：]?\s*([1-5])(?!\d)", re.I
    ),
}


def _to_mm(value: float, unit: str) -> float:
    return value * 10.0 if unit.lower() in ("cm", "厘米") else value


@Language.factory("concept_matcher", default_config={"concepts": [], "phrases": []})
def make_concept_matcher(nlp: Language, name: str, concepts: list[str], phrases: list[str]):
    return ConceptMatcher(nlp, concepts, phrases)


class ConceptMatcher:
    """Marks concept mentions (and whole given sentences) as entities; longest match wins."""

    def __init__(
        self,
        nlp: Language,
        concepts: list[str],
        phrases: list[str],
        table: ConceptTable | None = None,
    ):
        table = table or default_concepts()
        lang = nlp.lang
        self.matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        self.term_concepts: dict[str, set[str]] = {}
        for cid in sorted(concepts):
            for term in table[cid].terms(lang):
                self.term_concepts.setdefault(term.lower(), set()).add(cid)
        for key in sorted(self.term_concepts):
            self.matcher.add(f"T::{key}", [nlp.make_doc(key)])
        # English terms also match with a side word inside them ("enlarged left axillary lymph
        # node", "extending into the right parametrium"): side is its own field, not part of
        # the term; and with a copula, as reports write them ("myometrial invasion is less
        # than 50%" for "myometrial invasion less than 50%").
        self.gapped = Matcher(nlp.vocab)
        if lang == "en":
            side = {"LOWER": {"IN": SIDE_WORDS + COPULAS}, "OP": "?"}
            for key in sorted(self.term_concepts):
                tokens = [t.lower_ for t in nlp.make_doc(key)]
                if len(tokens) >= 2:
                    pattern = [{"LOWER": tokens[0]}]
                    for token in tokens[1:]:
                        pattern += [side, {"LOWER": token}]
                    self.gapped.add(f"T::{key}", [pattern])
        for text in sorted(phrases):
            self.matcher.add(f"P::{text.lower()}", [nlp.make_doc(text)])
        self.clock_re = CLOCK_RE["zh" if lang == "zh" else "en"]

    def __call__(self, doc: Doc) -> Doc:
        spans: list[Span] = []
        matches = [*self.matcher(doc), *(self.gapped(doc) if len(self.gapped) else [])]
        for match_id, start, end in matches:
            kind, _, key = doc.vocab.strings[match_id].partition("::")
            span = Span(doc, start, end, label="CONCEPT" if kind == "T" else "PHRASE")
            if kind == "T":
                span._.concepts = tuple(sorted(self.term_concepts[key]))
            spans.append(span)
        text = doc.text
        for regex, label in (
            (self.clock_re, "CLOCK"),
            (SIZE_RE, "SIZE"),
            (CATEGORY_RE["birads"], "BIRADS"),
            (CATEGORY_RE["orads"], "ORADS"),
        ):
            for m in regex.finditer(text):
                if label == "SIZE" and not size_mm(m):
                    continue
                span = doc.char_span(m.start(), m.end(), label=label, alignment_mode="expand")
                if span is not None:
                    span._.payload = m
                    spans.append(span)
        doc.ents = filter_spans(spans)
        return doc


SIDE_WORDS = ["left", "right", "bilateral", "left-sided", "right-sided"]
COPULAS = ["is", "are", "was", "were"]
# Chinese reports put a copula before a finding's description ("T2WI呈高信号", "TIC呈持续上升型");
# it carries nothing, and dropping it lets the terms match.
ZH_FILLERS = re.compile(r"[呈]")
ANAPHORS = {"the", "this", "that", "said", "该", "此", "上述", "前述"}


def anaphoric(span: Span) -> bool:
    """'The lesion ...' refers back to a finding already described."""
    before = span.doc[max(span.start - 2, span.sent.start) : span.start].text.lower().strip()
    return any(before.endswith(a) for a in ANAPHORS) or any(
        word in ANAPHORS for word in before.split()
    )


def size_mm(m: re.Match) -> float | None:
    """The largest dimension of '12 mm', '1.2 x 0.8 cm', '1.2cm×0.9cm' in mm (None: no unit)."""
    parts = [(float(m.group(1)), m.group(2) or "")]
    for piece in re.finditer(rf"({NUMBER})\s*(mm|cm|毫米|厘米)?", m.group(3) or ""):
        parts.append((float(piece.group(1)), piece.group(2) or ""))
    units = [u for _, u in parts if u]
    if not units:
        return None
    last = units[-1]
    return max(_to_mm(v, u or last) for v, u in parts)


@lru_cache(maxsize=16)
def build_pipeline(lang: str, concepts: frozenset[str], phrases: frozenset[str]) -> Language:
    """The pipeline marking `concepts` (their terms in `lang`) and whole `phrases`."""
    if lang not in ("en", "zh"):
        raise TerminologyError(f"unknown language {lang!r}; use en or zh")
    nlp = spacy.blank(lang)
    if lang == "en":
        # Single letters with a period ("category b.") are abbreviations to spaCy; not here.
        nlp.tokenizer.rules = {
            k: v for k, v in nlp.tokenizer.rules.items() if not re.fullmatch(r"[A-Za-z]\.", k)
        }
    nlp.add_pipe(
        "sentencizer",
        config={
            "punct_chars": ["。", "！", "？", "；", "\n"] if lang == "zh" else [".", "!", "?", ";"]
        },
    )
    nlp.add_pipe(
        "concept_matcher", config={"concepts": sorted(concepts), "phrases": sorted(phrases)}
    )
    nlp.add_pipe(
        "negex",
        name="negation",
        config={
            "neg_termset": NEGATION[lang],
            "ent_types": ["CONCEPT", "PHRASE"],
            "extension_name": "negex",
        },
    )
    nlp.add_pipe(
        "negex",
        name="uncertainty",
        config={
            "neg_termset": UNCERTAINTY[lang],
            "ent_types": ["CONCEPT", "BIRADS", "ORADS"],
            "extension_name": "uncertain",
        },
    )
    return nlp


@dataclass(frozen=True)
class Mention:
    """One thing a sentence says: a concept, a whole known phrase, a size, a clock-face
    position or a numeric category, with its negation and hedging."""

    label: str  # CONCEPT | PHRASE | SIZE | CLOCK | BIRADS | ORADS
    text: str
    concepts: tuple[str, ...] = ()  # CONCEPT: every concept the words can mean
    negated: bool = False
    uncertain: bool = False
    anaphoric: bool = False  # "the lesion ...": refers back to a finding already described
    size_mm: float | None = None  # SIZE: largest dimension
    number: int | None = None  # CLOCK: the hour; BIRADS / ORADS: the category


@dataclass(frozen=True)
class Sentence:
    mentions: list[Mention]
    in_impression: bool
    text: str = ""


def _mention(span: Span) -> Mention:
    payload = span._.payload
    label = span.label_
    return Mention(
        label=label,
        text=span.text,
        concepts=tuple(span._.concepts),
        negated=bool(span._.negex),
        uncertain=bool(span._.uncertain),
        anaphoric=label == "CONCEPT" and anaphoric(span),
        size_mm=size_mm(payload) if label == "SIZE" else None,
        number=int(payload.group(1)) if label in ("CLOCK", "BIRADS", "ORADS") else None,
    )


def read_sentences(
    text: str, lang: str, concepts: frozenset[str], phrases: frozenset[str]
) -> Iterator[Sentence]:
    """The report's sentences in order, each with its mentions and whether it is in the
    impression; history, indication, technique and bare headings are left out."""
    nlp = build_pipeline(lang, concepts, phrases)
    in_impression = False
    lines = [line for line in text.splitlines() if line.strip()]
    if lang == "zh":
        lines = [ZH_FILLERS.sub("", line) for line in lines]
    for doc in nlp.pipe(lines):
        if CONTEXT_HEADERS.match(doc.text) or EXAM_TITLE.match(doc.text):
            continue  # title, history, indication, technique: not findings of this study
        if (
            HEADING.match(doc.text)
            and not IMPRESSION_HEADERS.match(doc.text)
            and not FINDINGS_HEADERS.match(doc.text)
        ):
            continue  # a section heading ("Lymph nodes and distant spread:") states nothing
        if IMPRESSION_HEADERS.match(doc.text):
            in_impression = True
        elif FINDINGS_HEADERS.match(doc.text):
            in_impression = False
        for sent in doc.sents:
            yield Sentence([_mention(e) for e in sent.ents], in_impression, sent.text)


def detect_language(text: str) -> str:
    """Any CJK character means Chinese."""
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"
