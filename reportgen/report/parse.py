"""Free-text report -> structured report (`reportgen parse`): the template half.

`ontology.parser` marks what each sentence mentions (concepts, sizes, clock faces,
categories, with negation and hedging); this module decides what the mentions mean for
a template's report and builds it.

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

from ontology.errors import TerminologyError
from ontology.parser import Mention, Sentence, detect_language, read_sentences
from reportgen.errors import ConfigError
from reportgen.report.anatomy import other_anatomy_problem
from reportgen.report.build import build_report
from reportgen.report.rules import Scope, evaluate, referenced_fields
from reportgen.report.schema import Provenance, Report, StudyRef
from reportgen.report.template import FieldSpec, Template, load_template


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
    # a value concept several enum fields offer (FIGO: the side of parametrial invasion and
    # of the metastatic nodes) -> those fields, in template order
    shared: dict[str, list[str]] = field(default_factory=dict)
    # field id -> the concepts of the fields its condition names: a sentence naming one
    # ("right parametrial invasion") says which field a shared value belongs to
    anchors: dict[str, set[str]] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)  # concept -> report number field

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
                    if value in lex.values:
                        lex.shared.setdefault(value, [lex.values[value][0]]).append(spec.id)
                    lex.values.setdefault(value, (spec.id, value))
            elif spec.type == "number" and spec.level == "report":
                lex.numbers[spec.concept] = spec.id
            if spec.applicable_if is not None:
                lex.anchors[spec.id] = {
                    template.field(name).concept
                    for name, _ in referenced_fields(spec.applicable_if)
                    if template.has_field(name)
                }
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
            | set(self.numbers)
            | set(self.bools)
            | set(self.field_concepts)
            | set(self.derived)
            | self.finding_starts
        )


@dataclass
class _State:
    fields: dict = field(default_factory=dict)
    organ_sizes: list = field(default_factory=list)  # single finding: sizes of no named lesion
    findings: list[dict] = field(default_factory=list)
    stated: list = field(
        default_factory=list
    )  # (derived id, value, from impression, inside a finding)
    confidence: dict = field(default_factory=dict)
    finding_confidence: list[dict] = field(default_factory=list)
    negated_values: list = field(default_factory=list)  # (field id, implied value, finding or None)


# words that name a lesion in a sentence (a size there is the lesion's, not an organ's)
LESION_WORDS = re.compile(
    r"\b(?:mass|masses|tumou?rs?|lesions?|carcinomas?|cancers?|neoplasms?|nodules?|cysts?)\b"
    r"|肿块|肿瘤|病灶|癌|结节|囊肿",
    re.IGNORECASE,
)


class ReportParser:
    def __init__(self, template_id: str, lang: str = "en"):
        if lang not in ("en", "zh"):
            raise ConfigError(f"unknown language {lang!r}; use en or zh")
        self.template = load_template(template_id)
        self.lang = lang
        self.lexicon = TemplateLexicon.of(self.template)
        self.concepts = frozenset(self.lexicon.concepts)
        self.phrases = frozenset(self.lexicon.phrases)
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
        current: dict | None = None
        for sentence in read_sentences(text, self.lang, self.concepts, self.phrases):
            current = self._sentence(sentence, state, current)
        return self._finish(state, study_id)

    def _sentence(self, sentence: Sentence, state: _State, current: dict | None) -> dict | None:
        ents: list[Mention] = sentence.mentions
        in_impression = sentence.in_impression
        opens = [
            e
            for e in ents
            if e.label == "CONCEPT"
            and not e.negated
            and not e.anaphoric
            and self._resolve(e.concepts, None, state) in self.lexicon.finding_starts
        ]
        located = any(e.label in ("SIZE", "CLOCK") for e in ents) or any(
            e.label == "CONCEPT"
            and self.lexicon.values.get(self._resolve(e.concepts, None, state) or "", ("", ""))[0]
            == "laterality"
            for e in ents
        )
        if opens and state.findings and not self.single_finding and not located:
            opens = []  # "A mass is again noted." adds nothing new: keep describing the open finding
        mentioned = {
            cid for e in ents if e.label == "CONCEPT" for cid in e.concepts if cid in self.concepts
        }
        named_numbers = set(self.lexicon.numbers)
        head = False
        if opens and not in_impression:
            if self.single_finding:
                current = self._ensure_single(state)
            else:
                kind = self._resolve(opens[0].concepts, None, state)
                current = {"type": kind} if self.template.has_field("type") else {}
                state.findings.append(current)
                state.finding_confidence.append({})
            head = True
        for ent in ents:
            confidence = 0.5 if ent.uncertain else None
            if ent.label in ("BIRADS", "ORADS"):
                value = f"{ent.label.lower()}_{ent.number}"
                if value in self.lexicon.derived:
                    derived_id, derived_value = self.lexicon.derived[value]
                    state.stated.append(
                        (derived_id, derived_value, in_impression, current is not None)
                    )
                continue
            if in_impression and ent.label != "CONCEPT":
                continue
            if ent.label == "SIZE" and (named := named_numbers & mentioned):
                # "the largest node measures 15 mm in short axis": the field it names
                self._set(
                    state,
                    None,
                    self.lexicon.numbers[min(named)],
                    round(ent.size_mm),
                    confidence,
                    False,
                )
                continue
            if ent.label == "SIZE":
                size_field = next(
                    (f.id for f in self.template.finding_fields if f.type == "number"), None
                )
                if size_field and head:
                    self._set(state, current, size_field, round(ent.size_mm), confidence, head)
                elif size_field and self.single_finding:
                    # "the uterus measures 9.8 x 5.6 x 6.0 cm" is the organ, "a 4.2 cm mass"
                    # the tumour: a size counts as the tumour's only where a lesion is named
                    if LESION_WORDS.search(sentence.text):
                        self._set(state, current, size_field, round(ent.size_mm), confidence, True)
                    else:
                        state.organ_sizes.append((size_field, round(ent.size_mm), confidence))
                continue
            if ent.label == "CLOCK":
                if head and self.template.has_field("clock"):
                    self._set(state, current, "clock", f"clock_{ent.number}", confidence, head)
                continue
            if ent.label == "PHRASE":
                field_id, value = self._phrase_lookup(ent.text)
                # A template sentence can be a bare term ("膀胱黏膜受侵"); negation around it still counts.
                self._set(state, current, field_id, value != ent.negated, confidence, head)
                continue
            cid = self._resolve(ent.concepts, current, state)
            if cid is None:
                continue
            negated = ent.negated
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
                if cid in self.lexicon.shared:
                    field_id = self._shared_field(cid, mentioned, current, state)
                    if field_id is None:
                        continue
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

    def _shared_field(self, cid: str, mentioned: set[str], finding, state: _State) -> str | None:
        """The field a value several fields offer belongs to: the one whose condition's
        concept the sentence names, else the first not yet stated that applies (given
        what earlier sentences stated), else none: a bare "left" in a sentence about
        something else is no side."""
        fields = self.lexicon.shared[cid]
        for field_id in fields:
            if self.lexicon.anchors.get(field_id, set()) & mentioned:
                return field_id
        stated = finding if finding is not None else {}
        unstated = [f for f in fields if f not in state.fields and f not in stated]
        applicable = [f for f in unstated if self._applicable(self._spec(f), finding, state.fields)]
        return applicable[0] if applicable else None

    def _phrase_lookup(self, text: str) -> tuple[str, bool]:
        key = text.rstrip("。.").strip().lower()
        for phrase, target in self.lexicon.phrases.items():
            if phrase.lower() == key:
                return target
        raise KeyError(text)

    def _finish(self, state: _State, study_id: str) -> Report:
        for size_field, size, confidence in state.organ_sizes[:1]:
            if size_field not in self._ensure_single(state):  # no lesion was measured
                self._set(state, None, size_field, size, confidence, False)
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
        # What the lexicon defines: a multilocular cyst "with a solid component" is cystic-solid.
        for finding in state.findings:
            scope = Scope(finding, parent=Scope(state.fields))
            for cond, field_id, value in self.template.finding_implies:
                if evaluate(cond, scope):
                    finding[field_id] = value
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
    lang = lang or detect_language(text)
    try:
        parser = get_parser(template_id, lang)
        report = parser.parse(text, study_id=study_id)
    except TerminologyError as exc:
        raise ConfigError(str(exc)) from exc
    problem = other_anatomy_problem(text, parser.template)
    if problem is not None:  # a prostate report read as BI-RADS says so
        report.validation.problems.insert(0, problem)
    return report
