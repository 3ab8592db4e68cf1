"""Free-text report -> structured report (`reportgen parse`).

A spaCy pipeline per (template, language): blank `en`/`zh` tokenisers; a concept matcher
(PhraseMatcher over every preferred term and synonym of the template's concepts, plus the
template's own sentences for boolean fields); regular expressions for sizes, clock-face
positions and numeric categories ("BI-RADS 4", "O-RADS 3"); negspacy's Negex for
negation and a second Negex instance, with hedge cues, for uncertainty.

Extraction walks the report sentence by sentence. A non-negated mention of a finding
type (a mass, a tumour, an adnexal lesion) opens a finding and everything else in that
sentence (side, clock face, size) belongs to it; later sentences add to the open finding
what it does not already have. Conventions, as radiologists write: a boolean criterion
never mentioned is absent; an enum field with a "normal" value (vagina not involved) that
is never mentioned is normal; a negated mention of a two-way value ("no deep myometrial
invasion") means the other value. Hedged mentions keep their value with confidence 0.5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import negspacy.negation  # noqa: F401  (registers the "negex" factory)
import spacy
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from ontology.concepts import ConceptTable, default_concepts
from ontology.cues import NEGATION, UNCERTAINTY
from reportgen.errors import ConfigError
from reportgen.report.build import build_report
from reportgen.report.rules import Scope, evaluate
from reportgen.report.schema import Provenance, Report, StudyRef
from reportgen.report.template import FieldSpec, Template, load_template

if not Span.has_extension("concepts"):
    Span.set_extension("concepts", default=())
    Span.set_extension("payload", default=None)

IMPRESSION_HEADERS = re.compile(
    r"^\s*(impression|conclusion|assessment|opinion|诊断意见|印象|结论|影像诊断|诊断)\s*[:：]?",
    re.I,
)
CONTEXT_HEADERS = re.compile(
    r"^\s*(clinical history|clinical information|history|indication|technique|comparison|protocol|"
    r"临床资料|临床病史|病史|临床诊断|检查方法|检查技术|扫描方法|对比)\s*[:：]",
    re.I,
)
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


@dataclass
class TemplateLexicon:
    """What a template's concepts mean to the parser."""

    values: dict[str, tuple[str, str]] = field(default_factory=dict)  # concept -> (field id, value)
    bools: dict[str, str] = field(default_factory=dict)  # concept -> bool field id
    field_concepts: dict[str, str] = field(
        default_factory=dict
    )  # concept -> enum field id (for negation)
    derived: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # concept -> (derived id, value)
    finding_starts: set[str] = field(default_factory=set)
    phrases: dict[str, tuple[str, bool]] = field(
        default_factory=dict
    )  # sentence -> (field id, value)

    @classmethod
    def of(cls, template: Template) -> TemplateLexicon:
        lex = cls()
        for spec in [*template.fields, *template.finding_fields]:
            if spec.type == "bool":
                lex.bools[spec.concept] = spec.id
                for lang_phrases, value in ((spec.phrase_true, True), (spec.phrase_false, False)):
                    for text in (lang_phrases or {}).values():
                        lex.phrases[text.rstrip("。.").strip()] = (spec.id, value)
            elif spec.type == "enum":
                lex.field_concepts.setdefault(spec.concept, spec.id)
                for value in spec.values:
                    lex.values[value] = (spec.id, value)
        for spec in template.derived_report:
            for value in spec.values:
                lex.derived[value] = (spec.id, value)
        type_field = next((f for f in template.finding_fields if f.id == "type"), None)
        lex.finding_starts = set(type_field.values) if type_field else {template.finding_concept}
        lex.finding_starts |= set(template.finding_opened_by)
        return lex

    @property
    def concepts(self) -> set[str]:
        return (
            set(self.values)
            | set(self.bools)
            | set(self.field_concepts)
            | set(self.derived)
            | self.finding_starts
        )


@Language.factory("concept_matcher", default_config={"template_id": "birads_mri"})
def make_concept_matcher(nlp: Language, name: str, template_id: str):
    return ConceptMatcher(nlp, load_template(template_id))


class ConceptMatcher:
    """Marks concept mentions (and template sentences) as entities; longest match wins."""

    def __init__(self, nlp: Language, template: Template, concepts: ConceptTable | None = None):
        concepts = concepts or default_concepts()
        self.lexicon = TemplateLexicon.of(template)
        lang = nlp.lang
        self.matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        self.term_concepts: dict[str, set[str]] = {}
        for cid in sorted(self.lexicon.concepts):
            for term in concepts[cid].terms(lang):
                self.term_concepts.setdefault(term.lower(), set()).add(cid)
        for key in sorted(self.term_concepts):
            self.matcher.add(f"T::{key}", [nlp.make_doc(key)])
        # English terms also match with a side word inside them ("enlarged left axillary lymph
        # node", "extending into the right parametrium"): side is its own field, not part of the term.
        self.gapped = Matcher(nlp.vocab)
        if lang == "en":
            side = {"LOWER": {"IN": SIDE_WORDS}, "OP": "?"}
            for key in sorted(self.term_concepts):
                tokens = [t.lower_ for t in nlp.make_doc(key)]
                if len(tokens) >= 2:
                    pattern = [{"LOWER": tokens[0]}]
                    for token in tokens[1:]:
                        pattern += [side, {"LOWER": token}]
                    self.gapped.add(f"T::{key}", [pattern])
        for text in sorted(self.lexicon.phrases):
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
                if label == "SIZE" and not _size_mm(m):
                    continue
                span = doc.char_span(m.start(), m.end(), label=label, alignment_mode="expand")
                if span is not None:
                    span._.payload = m
                    spans.append(span)
        doc.ents = filter_spans(spans)
        return doc


SIDE_WORDS = ["left", "right", "bilateral", "left-sided", "right-sided"]
# Chinese reports put a copula before a finding's description ("T2WI呈高信号", "TIC呈持续上升型");
# it carries nothing, and dropping it lets the terms match.
ZH_FILLERS = re.compile(r"[呈]")
ANAPHORS = {"the", "this", "that", "said", "该", "此", "上述", "前述"}


def _anaphoric(span: Span) -> bool:
    """'The lesion ...' refers back to a finding already described."""
    before = span.doc[max(span.start - 2, span.sent.start) : span.start].text.lower().strip()
    return any(before.endswith(a) for a in ANAPHORS) or any(
        word in ANAPHORS for word in before.split()
    )


def _size_mm(m: re.Match) -> float | None:
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
def build_pipeline(template_id: str, lang: str) -> Language:
    if lang not in ("en", "zh"):
        raise ConfigError(f"unknown language {lang!r}; use en or zh")
    load_template(template_id)  # a clear error for an unknown template
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
    nlp.add_pipe("concept_matcher", config={"template_id": template_id})
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


@dataclass
class _State:
    fields: dict = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    stated: list = field(
        default_factory=list
    )  # (derived id, value, from impression, inside a finding)
    confidence: dict = field(default_factory=dict)
    finding_confidence: list[dict] = field(default_factory=list)
    negated_values: list = field(default_factory=list)  # (field id, implied value, finding or None)


class ReportParser:
    def __init__(self, template_id: str, lang: str = "en"):
        self.template = load_template(template_id)
        self.lang = lang
        self.nlp = build_pipeline(template_id, lang)
        self.lexicon = TemplateLexicon.of(self.template)
        self.single_finding = self.template.finding_max == 1

    # -- helpers -----------------------------------------------------------------------
    def _spec(self, field_id: str) -> FieldSpec:
        return self.template.field(field_id)

    def _applicable(self, spec: FieldSpec, finding: dict | None, report_fields: dict) -> bool:
        if spec.applicable_if is None:
            return True
        scope = (
            Scope(finding or {}, parent=Scope(report_fields))
            if spec.level == "finding"
            else Scope(report_fields)
        )
        return evaluate(spec.applicable_if, scope)

    def _resolve(
        self, candidates: tuple[str, ...], finding: dict | None, state: _State
    ) -> str | None:
        """Pick the candidate concept whose field applies here (one term, several concepts)."""
        relevant = [c for c in candidates if c in self.lexicon.concepts]
        if len(relevant) <= 1:
            return relevant[0] if relevant else None
        for cid in relevant:
            if cid in self.lexicon.values:
                spec = self._spec(self.lexicon.values[cid][0])
                if self._applicable(spec, finding, state.fields):
                    return cid
        return relevant[0]

    def _set(
        self,
        state: _State,
        finding: dict | None,
        field_id: str,
        value,
        confidence: float | None,
        head: bool,
    ) -> None:
        spec = self._spec(field_id)
        if spec.level == "finding":
            if finding is None:
                if not self.single_finding:
                    return
                finding = self._ensure_single(state)
            if field_id in finding and not head:
                return  # later sentences never overwrite what the finding's own sentence said
            finding[field_id] = value
            if confidence is not None:
                state.finding_confidence[state.findings.index(finding)][field_id] = confidence
        else:
            state.fields.setdefault(field_id, value)
            if confidence is not None:
                state.confidence[field_id] = confidence

    def _ensure_single(self, state: _State) -> dict:
        if not state.findings:
            state.findings.append({})
            state.finding_confidence.append({})
        return state.findings[0]

    # -- extraction ----------------------------------------------------------------------
    def parse(self, text: str, study_id: str = "parsed") -> Report:
        state = _State()
        in_impression = False
        current: dict | None = None
        lines = [line for line in text.splitlines() if line.strip()]
        if self.lang == "zh":
            lines = [ZH_FILLERS.sub("", line) for line in lines]
        for doc in self.nlp.pipe(lines):
            if CONTEXT_HEADERS.match(doc.text):
                continue  # history, indication, technique: not findings of this study
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
                current = self._sentence(sent, state, current, in_impression)
        return self._finish(state, study_id)

    def _sentence(
        self, sent: Span, state: _State, current: dict | None, in_impression: bool
    ) -> dict | None:
        ents = list(sent.ents)
        opens = [
            e
            for e in ents
            if e.label_ == "CONCEPT"
            and not e._.negex
            and not _anaphoric(e)
            and self._resolve(e._.concepts, None, state) in self.lexicon.finding_starts
        ]
        located = any(e.label_ in ("SIZE", "CLOCK") for e in ents) or any(
            e.label_ == "CONCEPT"
            and self.lexicon.values.get(self._resolve(e._.concepts, None, state) or "", ("", ""))[0]
            == "laterality"
            for e in ents
        )
        if opens and state.findings and not self.single_finding and not located:
            opens = []  # "A mass is again noted." adds nothing new: keep describing the open finding
        head = False
        if opens and not in_impression:
            if self.single_finding:
                current = self._ensure_single(state)
            else:
                kind = self._resolve(opens[0]._.concepts, None, state)
                current = {"type": kind} if self.template.has_field("type") else {}
                state.findings.append(current)
                state.finding_confidence.append({})
            head = True
        for ent in ents:
            confidence = 0.5 if ent._.uncertain else None
            if ent.label_ in ("BIRADS", "ORADS"):
                target = "birads" if ent.label_ == "BIRADS" else "orads"
                value = f"{target}_{ent._.payload.group(1)}"
                if value in self.lexicon.derived:
                    derived_id, derived_value = self.lexicon.derived[value]
                    state.stated.append(
                        (derived_id, derived_value, in_impression, current is not None)
                    )
                continue
            if in_impression and ent.label_ != "CONCEPT":
                continue
            if ent.label_ == "SIZE":
                size_field = next(
                    (f.id for f in self.template.finding_fields if f.type == "number"), None
                )
                if size_field and (head or self.single_finding):
                    self._set(
                        state, current, size_field, round(_size_mm(ent._.payload)), confidence, head
                    )
                continue
            if ent.label_ == "CLOCK":
                if head and self.template.has_field("clock"):
                    self._set(
                        state,
                        current,
                        "clock",
                        f"clock_{int(ent._.payload.group(1))}",
                        confidence,
                        head,
                    )
                continue
            if ent.label_ == "PHRASE":
                field_id, value = self._phrase_lookup(ent.text)
                # A template sentence can be a bare term ("膀胱黏膜受侵"); negation around it still counts.
                self._set(state, current, field_id, value != bool(ent._.negex), confidence, head)
                continue
            cid = self._resolve(ent._.concepts, current, state)
            if cid is None:
                continue
            negated = bool(ent._.negex)
            if cid in self.lexicon.derived:
                if not negated:
                    derived_id, value = self.lexicon.derived[cid]
                    state.stated.append((derived_id, value, in_impression, current is not None))
                continue
            if in_impression:
                continue  # features are read from the findings, the impression only adds categories
            if cid in self.lexicon.bools:
                self._set(state, current, self.lexicon.bools[cid], not negated, confidence, head)
            elif cid in self.lexicon.values:
                field_id, value = self.lexicon.values[cid]
                spec = self._spec(field_id)
                if negated:
                    if spec.negated and spec.negated != value:
                        state.negated_values.append((field_id, spec.negated, current))
                    continue
                if field_id == "type":
                    continue
                self._set(state, current, field_id, value, confidence, head)
            elif cid in self.lexicon.field_concepts and negated:
                spec = self._spec(self.lexicon.field_concepts[cid])
                if spec.negated:
                    state.negated_values.append((spec.id, spec.negated, current))
        return current

    def _phrase_lookup(self, text: str) -> tuple[str, bool]:
        key = text.rstrip("。.").strip().lower()
        for phrase, target in self.lexicon.phrases.items():
            if phrase.lower() == key:
                return target
        raise KeyError(text)

    def _finish(self, state: _State, study_id: str) -> Report:
        for field_id, value, finding in state.negated_values:
            spec = self._spec(field_id)
            if spec.level == "finding":
                target = (
                    finding
                    if finding is not None
                    else (self._ensure_single(state) if self.single_finding else None)
                )
                if target is not None and field_id not in target:
                    target[field_id] = value
            else:
                state.fields.setdefault(field_id, value)
        # Unmentioned means normal: absent booleans, the "normal" value of enum fields.
        for spec in self.template.fields:
            if spec.id in state.fields or not spec.required:
                continue
            if spec.type == "bool":
                state.fields[spec.id] = False
            elif spec.type == "enum" and spec.negated:
                state.fields[spec.id] = spec.negated
        for finding in state.findings:
            for spec in self.template.finding_fields:
                if spec.id not in finding and spec.required and spec.type == "bool":
                    finding[spec.id] = False
        # Drop values that do not apply to their finding (e.g. a margin on a non-mass enhancement).
        for finding in state.findings:
            for key in list(finding):
                if not self._applicable(self._spec(key), finding, state.fields):
                    del finding[key]
        findings = state.findings[: self.template.finding_max]
        # A category stated in the impression is the study's; without an impression, one
        # stated outside any finding (a finding's own category line is not the study's).
        from_impression = [(d, v) for d, v, imp, _ in state.stated if imp]
        chosen = from_impression or [
            (d, v) for d, v, _, in_finding in state.stated if not in_finding
        ]
        stated: dict[str, str] = {}
        for derived_id, value in chosen:
            stated.setdefault(derived_id, value)
        return build_report(
            self.template,
            state.fields,
            findings,
            study=StudyRef(study_id=study_id),
            provenance=Provenance(source="parser", model_name="reportgen.parse"),
            stated=stated,
            trust_stated=True,
            confidences=state.confidence,
            finding_confidences=state.finding_confidence[: len(findings)],
        )


@lru_cache(maxsize=16)
def get_parser(template_id: str, lang: str) -> ReportParser:
    return ReportParser(template_id, lang)


def parse_report(
    text: str, template_id: str, lang: str | None = None, study_id: str = "parsed"
) -> Report:
    """Parse free text; the language is detected (any CJK character means Chinese) if not given."""
    if lang is None:
        lang = "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"
    return get_parser(template_id, lang).parse(text, study_id=study_id)
