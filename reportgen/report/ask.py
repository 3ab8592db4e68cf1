"""Closed-ended questions about a study, answered from its structured reading.

A question is read by the same ontology pipeline that parses reports (`ontology.parser`:
preferred terms and synonyms in English and Chinese, negation): each concept it names is
a template field, a field's value, a finding type or a derived result, and that decides
what is asked. Interrogative words only say which form the answer takes (yes or no, a
value, a size, a count); nothing is keyed per question. The answer is read off the
report the model drafted, so it never says anything the draft does not: a value the
study cannot show (no enhancement without a contrast series) is answered as not
assessable, and a question about what the template does not read is refused in one
line that says what can be asked.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from ontology.concepts import default_concepts
from ontology.parser import Mention, read_sentences
from reportgen.report.anatomy import foreign_regions
from reportgen.report.assessable import missing_families, not_assessable, unseen_values
from reportgen.report.parse import LESION_WORDS, TemplateLexicon
from reportgen.report.schema import Finding, Report, Value
from reportgen.report.template import FieldSpec, Template, load_template

# the form of the answer, from interrogative words (any template, any question)
COUNT_WORDS = re.compile(r"\bhow many\b|\bnumber of\b|多少个|几个|几处|几枚|数目|数量", re.I)
WHICH_WORDS = re.compile(
    r"\b(?:which|what|how (?:deep|far|extensive|much))\b|哪|什么|几期|几类|几级|多少|如何|怎样",
    re.I,
)
# a question that opens with none of these and names a field asks for its value
# ("myometrial invasion depth?", "肌层浸润深度？")
YES_NO_WORDS = re.compile(
    r"^\s*(?:is|are|does|do|did|has|have|any|can|was|were|will|should|could)\b|吗|是否|有没有|有无|是不是",
    re.I,
)
LARGER_WORDS = re.compile(
    r"\b(?:larger|bigger|greater|more|over|above|exceed\w*)\b|大于|超过|>", re.I
)
SMALLER_WORDS = re.compile(r"\b(?:smaller|less|under|below)\b|小于|不足|<", re.I)
# a question about an organ or vessel asks whether disease reaches it only with such a word
INVOLVE_WORDS = re.compile(
    r"\b(?:involv\w*|affect\w*|invad\w*|invasion|infiltrat\w*|encas\w*|abut\w*|contact\w*|"
    r"touch\w*|reach\w*|extend\w*|extension|spread\w*|metasta\w*|dilat\w*|enlarged|"
    r"breach\w*|penetrat\w*|through|beyond)\b"
    r"|受累|累及|受侵|侵犯|浸润|包绕|接触|转移|扩张|增大",
    re.I,
)
ZH_A_NOT_A = re.compile(r"有没有|有无|是不是有")
SIZE_CONCEPT = "diameter"
SUSPICIOUS_CONCEPT = "suspicious_finding"
CATEGORY_LABELS = {"BIRADS": "birads_", "ORADS": "orads_"}


POSITIVE = "__positive__"  # any value but the field's negative one ("no contact"), or True


@dataclass(frozen=True)
class Query:
    """What a question asks, in the template's terms."""

    form: str  # "yes_no" | "value" | "size" | "size_compare" | "count"
    fields: tuple[str, ...] = ()  # the fields or derived results asked about
    value: object = None  # yes/no on a report-level field: the value asked about
    conditions: tuple[tuple[str, object], ...] = ()  # finding-level (field, value) filters
    suspicious: bool = False  # only findings the template calls suspicious
    negated: bool = False  # "is there no ...": yes means absent
    findings: bool = False  # answered over the findings

    @property
    def field(self) -> str | None:
        return self.fields[0] if self.fields else None


@dataclass
class Answer:
    question: str
    form: str
    answer: object  # True / False / a concept id (or several) / mm / a count; None: none
    text: str
    field_id: str | None = None  # the template field (or derived result) it rests on
    probability: float | None = None
    evidence: list[dict] = field(default_factory=list)
    status: str = "answered"  # "answered" | "not_assessable" | "refused"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QuestionLexicon:
    """What each concept a question may name means for one template."""

    template: Template
    parse: TemplateLexicon
    # concept -> fields it asks about without naming a value: the field's own concept, or
    # a concept grouping several fields ("vessel" -> the five contact fields)
    about: dict[str, tuple[str, ...]]
    # anatomy -> fields about it (their concept's finding site: "the SMA" -> SMA contact),
    # asked only with a word of involvement ("is the liver cirrhotic?" is not about metastases)
    sites: dict[str, tuple[str, ...]]
    # a concept grouping several values of one report-level field -> (field, those values):
    # "stage III" asks whether the stage is any of IIIA1 ... IIIC2
    groups: dict[str, tuple[str, frozenset[str]]]

    @property
    def concepts(self) -> frozenset[str]:
        extra = {SIZE_CONCEPT, SUSPICIOUS_CONCEPT, self.template.finding_concept}
        named = set(self.about) | set(self.sites) | set(self.groups)
        return frozenset(self.parse.concepts | named | extra)


@lru_cache(maxsize=16)
def question_lexicon(template_id: str) -> QuestionLexicon:
    template = load_template(template_id)
    concepts = default_concepts()
    top = {"root", *(c for c in concepts if concepts[c].parent == "root")}
    about: dict[str, list[str]] = {}
    sites: dict[str, list[str]] = {}
    specs = [*template.fields, *template.finding_fields, *template.derived_report]
    for spec in specs:
        if concepts.is_a(spec.concept, SIZE_CONCEPT):
            continue  # size has its own form
        # a kind of finding the field asks about is asked by it ("parametrial invasion" of
        # a field on vaginal or parametrial involvement), and so are its grouping ancestors
        kinds = [spec.concept] + [
            c
            for c in concepts
            if c != spec.concept and concepts.is_a(c, spec.concept) and concepts.is_a(c, "finding")
        ]
        names = {*kinds, *(a for a in concepts.ancestors(spec.concept) if a not in top)}
        for name in names:
            about.setdefault(name, []).append(spec.id)
        for kind in kinds:  # the sites of the field's kinds: "the vagina", "the parametrium"
            if site := concepts[kind].relations.get("finding_site"):
                sites.setdefault(site, []).append(spec.id)
    about.pop(template.finding_concept, None)
    groups: dict[str, tuple[str, frozenset[str]]] = {}
    for spec in [*template.fields, *template.derived_report]:
        values = [str(v) for v in (spec.values or [])]
        above = {spec.concept, *concepts.ancestors(spec.concept)}  # the field's own kind
        for group in {a for v in values for a in concepts.ancestors(v)} - top - above:
            members = frozenset(v for v in values if concepts.is_a(v, group))
            if len(members) >= 2 and group not in values:
                groups[group] = (spec.id, members)
    return QuestionLexicon(
        template,
        TemplateLexicon.of(template),
        {k: tuple(v) for k, v in about.items()},
        {k: tuple(v) for k, v in sites.items()},
        groups,
    )


def _mentions(question: str, lexicon: QuestionLexicon, lang: str) -> list[Mention]:
    return [
        m for s in read_sentences(question, lang, lexicon.concepts, frozenset()) for m in s.mentions
    ]


def read_question(question: str, template: Template, lang: str = "en") -> Query | None:
    """The query a question makes, or None when it names nothing the template reads."""
    if foreign_regions(question, template):  # "is there a brain tumour?" of a breast study
        return None
    if lang == "zh":  # "有没有 X" asks whether there is X: a question form, not a negation
        question = ZH_A_NOT_A.sub("是否有", question)
    lexicon = question_lexicon(template.id)
    lex = lexicon.parse
    mentions = _mentions(question, lexicon, lang)
    named = [(c, m.negated) for m in mentions if m.label == "CONCEPT" for c in m.concepts]
    names = {c for c, _ in named}
    kinds = lex.finding_starts | {template.finding_concept}  # what a finding is: not the ask
    negated = any(neg for c, neg in named if c not in kinds)
    suspicious = SUSPICIOUS_CONCEPT in names
    about_findings = (
        bool(names & lex.finding_starts)
        or template.finding_concept in names
        or bool(LESION_WORDS.search(question))
    )
    conditions: list[tuple[str, object]] = []
    report_value: tuple[str, object] | None = None
    for cid in sorted(names):
        if cid in lex.values:
            field_id, value = lex.values[cid]
            if _level(template, field_id) == "finding":
                conditions.append((field_id, value))
            else:
                report_value = (field_id, value)
        elif cid in lex.derived:
            report_value = lex.derived[cid]
        elif cid in lexicon.groups:  # "stage III": any of its substages
            report_value = lexicon.groups[cid]
    for m in mentions:  # "BI-RADS 4", "O-RADS 3": the headline's category
        if m.label in CATEGORY_LABELS and m.number is not None:
            report_value = (template.headline, f"{CATEGORY_LABELS[m.label]}{m.number}")
    conditions.sort(key=lambda c: c[0] == template.finding_type_field)  # the type says least
    valued = {f for f, _ in conditions} | ({report_value[0]} if report_value else set())
    ignored = lex.finding_starts | set(lex.values) | set(lex.derived) | set(lexicon.groups)
    involved = bool(INVOLVE_WORDS.search(question))
    targets = [
        f
        for c in sorted(names - ignored)
        for f in (*lexicon.about.get(c, ()), *(lexicon.sites.get(c, ()) if involved else ()))
        if f not in valued
    ]
    targets = _narrowed(list(dict.fromkeys(targets)), names, lex)
    finding_targets = [f for f in targets if _level(template, f) == "finding"]
    if COUNT_WORDS.search(question) and (about_findings or suspicious or conditions):
        return Query("count", conditions=tuple(conditions), suspicious=suspicious, findings=True)
    sizes = [m.size_mm for m in mentions if m.label == "SIZE" and m.size_mm]
    compare = (
        "gt" if LARGER_WORDS.search(question) else "lt" if SMALLER_WORDS.search(question) else None
    )
    if sizes and compare:  # "is the tumour larger than 4 cm?"
        return Query(
            "size_compare", ("size_mm",), (compare, sizes[0]), tuple(conditions), suspicious
        )
    if SIZE_CONCEPT in names and (about_findings or conditions or suspicious):
        return Query("size", ("size_mm",), conditions=tuple(conditions), suspicious=suspicious)
    asks_value = WHICH_WORDS.search(question) or not YES_NO_WORDS.search(question)
    if asks_value and targets:
        valued_targets = [f for f in targets if _kind(template, f) != "bool"]
        fields = tuple(valued_targets or targets)  # "which side is the invasion": its side
        return Query("value", fields, conditions=tuple(conditions), suspicious=suspicious)
    if report_value is not None:
        return Query("yes_no", (report_value[0],), report_value[1], negated=negated)
    conditions += [(f, POSITIVE) for f in finding_targets]
    report_targets = tuple(f for f in targets if f not in finding_targets)
    if report_targets and not conditions and not suspicious:  # "does it reach the side wall?"
        return Query("yes_no", report_targets, POSITIVE, negated=negated)
    if conditions or about_findings or suspicious:
        fields = tuple(f for f, _ in conditions)
        return Query("yes_no", fields, None, tuple(conditions), suspicious, negated, True)
    return None


def _narrowed(targets: list[str], names: set[str], lex: TemplateLexicon) -> list[str]:
    """Of fields that share a concept (FIGO: the side of parametrial invasion and of the
    nodes), those whose condition's fields the question names ("the side of the
    parametrial invasion"), where it names any."""
    anchored = [f for f in targets if lex.anchors.get(f, set()) & names]
    return anchored if len(targets) > 1 and anchored else targets


def _kind(template: Template, field_id: str) -> str:
    return template.field(field_id).type if template.has_field(field_id) else "enum"


def _level(template: Template, field_id: str) -> str:
    return template.field(field_id).level if template.has_field(field_id) else "report"


def _words(value: object, lang: str) -> str:
    if isinstance(value, bool):
        return ("yes" if value else "no") if lang == "en" else ("是" if value else "否")
    concepts = default_concepts()
    return concepts[str(value)].pref(lang) if str(value) in concepts else str(value)


def _round(p: float | None) -> float | None:
    return None if p is None else round(float(p), 4)


def _evidence(index: int, finding: Finding) -> dict:
    out: dict = {"finding": index + 1}
    if finding.evidence is not None:
        if finding.evidence.box is not None:
            out["box_mm"] = finding.evidence.box.model_dump()
        if finding.evidence.key_slice_png:
            out["key_image"] = finding.evidence.key_slice_png
    return out


class Asker:
    """Answers questions about one drafted report, from nothing but that report."""

    def __init__(self, report: Report, template: Template | None = None):
        self.report = report
        self.template = template or load_template(report.template.id)
        self.sequences = list(report.study.sequences_used)
        self.hidden = not_assessable(self.template, self.sequences or None)
        self.unseen = unseen_values(self.template, self.sequences or None)

    # -- what a value means ---------------------------------------------------------------
    def _spec(self, field_id: str | None) -> FieldSpec | None:
        if field_id and self.template.has_field(field_id):
            return self.template.field(field_id)
        return next((d for d in self.template.derived_report if d.id == field_id), None)

    def _named(self, field_id: str, lang: str) -> str:
        """A field in words: what it is about where its concept says ("superior mesenteric
        artery" for the SMA's contact), else the field's own concept."""
        concepts = default_concepts()
        concept = concepts[self._spec(field_id).concept]  # type: ignore[union-attr]
        site = concept.relations.get("finding_site")
        return concepts[site].pref(lang) if site in concepts else concept.pref(lang)

    def _stated(self, field_id: str) -> Value | None:
        return self.report.derived.get(field_id) or self.report.fields.get(field_id)

    def _holds(self, field_id: str, drafted: Value, asked: object) -> bool:
        if asked == POSITIVE:
            spec = self._spec(field_id)
            negative = getattr(spec, "negated", None) or False  # derived results have none
            return drafted.value not in (negative, False, None)
        if isinstance(asked, frozenset):  # a group of values ("stage III")
            return drafted.value in asked
        return drafted.value == asked

    def _probability(self, field_id: str, drafted: Value, asked: object) -> float | None:
        """P(the field holds what is asked), from the drafted value and its confidence: the
        confidence where it holds, the rest shared among the other values where not."""
        if drafted.confidence is None:
            return None
        spec = self._spec(field_id)
        options = len(spec.values) if spec is not None and spec.values else 2
        if self._holds(field_id, drafted, asked):
            return drafted.confidence
        if asked == POSITIVE:  # every other value but the negative one is positive
            return 1.0 - drafted.confidence
        share = len(asked) if isinstance(asked, frozenset) else 1
        return (1.0 - drafted.confidence) * share / max(options - 1, 1)

    def _cannot_show(self, query: Query) -> FieldSpec | None:
        """The field a question rests on that the study cannot show, if any."""
        asked = [(f, query.value) for f in query.fields] + list(query.conditions)
        for field_id, value in asked:
            spec = self._spec(field_id)
            if spec is None:
                continue
            if spec.id in self.hidden or str(value) in self.unseen.get(spec.id, ()):
                return spec
        return None

    def scope(self, lang: str) -> str:
        """What can be asked, in words."""
        specs = [
            *self.template.fields,
            *self.template.finding_fields,
            *self.template.derived_report,
        ]
        names = [default_concepts()[s.concept].pref(lang) for s in specs]
        return (", " if lang == "en" else "、").join(dict.fromkeys(names))

    def _finding_chances(self, query: Query) -> list[tuple[int, Finding, bool, float | None]]:
        """Each finding: whether it meets the query's conditions, and the probability that
        it does (the product over the conditions)."""
        spec = self.template.suspicious_finding_result
        out = []
        for i, finding in enumerate(self.report.findings):
            meets, probability = True, 1.0
            for field_id, value in query.conditions:
                drafted = finding.fields.get(field_id)
                if drafted is None:  # not applicable to this finding: it does not hold
                    meets, probability = False, 0.0
                    break
                meets &= self._holds(field_id, drafted, value)
                p = self._probability(field_id, drafted, value)
                probability = None if p is None or probability is None else probability * p
            if query.suspicious and spec is not None:
                result = finding.derived.get(spec.id)
                meets &= result is not None and result.value in spec.suspicious
            out.append((i, finding, meets, probability))
        return out

    # -- answers --------------------------------------------------------------------------
    def answer(self, question: str, lang: str = "en") -> Answer:
        query = read_question(question, self.template, lang)
        if query is None:
            title = self.template.title[lang]
            text = (
                f"Not a question this reading answers; {title} reads: {self.scope(lang)}."
                if lang == "en"
                else f"该问题超出{title}的范围；可询问：{self.scope(lang)}。"
            )
            return Answer(question, "refused", None, text, status="refused")
        blind = self._cannot_show(query)
        if blind is not None:
            name = default_concepts()[blind.concept].pref(lang)
            families = (
                "/".join(missing_families(blind, self.sequences))
                if self.template.has_field(blind.id)
                else ""
            )
            text = (
                f"Not assessable: this study cannot show {name}"
                + (f" (no {families} series)." if families else ".")
                if lang == "en"
                else f"无法评估：本检查无法显示{name}。"
            )
            return Answer(question, query.form, None, text, blind.id, status="not_assessable")
        return getattr(self, f"_{query.form}")(question, query, lang)

    def _yes_no(self, question: str, query: Query, lang: str) -> Answer:
        evidence: list[dict] = []
        if query.findings:
            chances = self._finding_chances(query)
            yes = any(meets for _, _, meets, _ in chances)
            probs = [p for *_, p in chances]
            p_yes = None if None in probs else 1.0 - float(np.prod([1.0 - p for p in probs]))
            evidence = [_evidence(i, f) for i, f, meets, _ in chances if meets]
            field_id = query.field or self.template.finding_concept
        else:  # report level: yes when any of the fields asked about holds
            field_id = query.field or ""
            stated = [(f, v) for f in query.fields if (v := self._stated(f)) is not None]
            yes = any(self._holds(f, v, query.value) for f, v in stated)
            chances = [self._probability(f, v, query.value) for f, v in stated]
            p_yes = (  # nothing stated: not applicable to what the draft found
                None
                if not stated or None in chances
                else 1.0 - float(np.prod([1.0 - p for p in chances]))
            )
        if query.negated:
            yes, p_yes = not yes, None if p_yes is None else 1.0 - p_yes
        probability = None if p_yes is None else (p_yes if yes else 1.0 - p_yes)
        text = _words(yes, lang).capitalize() if lang == "en" else _words(yes, lang)
        return Answer(question, "yes_no", yes, text, field_id, _round(probability), evidence)

    def _value(self, question: str, query: Query, lang: str) -> Answer:
        stated = [(f, v) for f in query.fields if (v := self._stated(f)) is not None]
        sep = "; " if lang == "en" else "；"
        if stated and len(query.fields) == 1:
            field_id, value = stated[0]
            return Answer(
                question, "value", value.value, _words(value.value, lang), field_id,
                _round(value.confidence),
            )  # fmt: skip
        if len(query.fields) > 1:  # "which vessels?": the fields of the group that hold
            chances = [(i, f) for i, f, meets, _ in self._finding_chances(query) if meets] or [
                (i, f) for i, f in enumerate(self.report.findings)
            ]
            holding = [
                fid
                for fid in query.fields
                if any(
                    fid in f.fields and self._holds(fid, f.fields[fid], POSITIVE)
                    for _, f in chances
                )
                or (
                    fid in self.report.fields
                    and self._holds(fid, self.report.fields[fid], POSITIVE)
                )
            ]
            names = [self._named(fid, lang) for fid in holding]
            text = sep.join(names) if names else ("none" if lang == "en" else "无")
            return Answer(question, "value", holding, text, query.fields[0])
        field_id = query.fields[0]
        chances = [(i, f) for i, f, meets, _ in self._finding_chances(query) if meets]
        values = [(i, f, f.fields[field_id]) for i, f in chances if field_id in f.fields]
        if not values:
            text = "Not stated: no finding has it." if lang == "en" else "未描述：无相应病灶。"
            return Answer(question, "value", None, text, field_id)
        distinct = list(dict.fromkeys(v.value for _, _, v in values))
        text = sep.join(_words(v, lang) for v in distinct)
        confidences = [v.confidence for _, _, v in values if v.confidence is not None]
        answer = distinct[0] if len(distinct) == 1 else distinct
        evidence = [_evidence(i, f) for i, f, _ in values]
        probability = min(confidences) if confidences else None
        return Answer(question, "value", answer, text, field_id, _round(probability), evidence)

    def _size(self, question: str, query: Query, lang: str) -> Answer:
        chances = [(i, f) for i, f, meets, _ in self._finding_chances(query) if meets]
        sized = [(i, f) for i, f in chances if "size_mm" in f.fields]
        if not sized:
            text = "No such finding is reported." if lang == "en" else "未见相应病灶。"
            return Answer(question, "size", None, text, "size_mm")
        i, finding = max(sized, key=lambda m: float(m[1].fields["size_mm"].value))
        mm = float(finding.fields["size_mm"].value)
        text = f"{mm:g} mm (finding {i + 1})" if lang == "en" else f"{mm:g} mm（病灶{i + 1}）"
        return Answer(question, "size", mm, text, "size_mm", None, [_evidence(i, finding)])

    def _size_compare(self, question: str, query: Query, lang: str) -> Answer:
        """Yes when the largest finding the question means is above (below) the size."""
        sized = self._size(
            question, Query("size", query.fields, None, query.conditions, query.suspicious), lang
        )
        if sized.answer is None:
            return Answer(
                question,
                "yes_no",
                False,
                _words(False, lang).capitalize() if lang == "en" else _words(False, lang),
                "size_mm",
            )
        op, mm = query.value  # type: ignore[misc]
        yes = float(sized.answer) > mm if op == "gt" else float(sized.answer) < mm
        word = _words(yes, lang)
        text = f"{word.capitalize() if lang == 'en' else word} ({sized.text})"
        return Answer(question, "yes_no", yes, text, "size_mm", None, sized.evidence)

    def _count(self, question: str, query: Query, lang: str) -> Answer:
        found = [(i, f) for i, f, meets, _ in self._finding_chances(query) if meets]
        evidence = [_evidence(i, f) for i, f in found]
        concept = self.template.finding_concept
        return Answer(question, "count", len(found), str(len(found)), concept, None, evidence)


def ask(report: Report, question: str, lang: str = "en") -> Answer:
    """Answer one closed-ended question from a drafted report."""
    return Asker(report).answer(question, lang)
