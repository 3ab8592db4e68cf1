"""The template automaton: which tokens may come next, and reports <-> token sequences.

A report is written as

    <bos> (<f:field> value)*            report fields in template order (applicable ones)
          (<finding> (<f:field> value)*)* <findings_end>
          (<f:derived> <v:value>)*       the model's own derived results (checked by rules)
          <comment> piece* <eos>

A value is `<v:concept>` (enum: only the field's allowed concepts), `<true>`/`<false>`,
`<n:…>` (numbers on the field's grid, inside its range) or `<absent>` (optional fields
only). A field whose condition does not hold, or that only a reader states (`drafted:
false`), is skipped, so it can never be written;
`<findings_end>` is allowed only once the template's minimum number of findings is
reached, `<finding>` only below its maximum, and `<eos>` only after the comment.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from reportgen.model import vocab as V
from reportgen.model.vocab import ReportVocab
from reportgen.report.assessable import not_assessable, unseen_values
from reportgen.report.rules import Scope, evaluate
from reportgen.report.schema import Report
from reportgen.report.template import FieldSpec, Template
from reportgen.report.values import plain

MAX_COMMENT_PIECES = 48


class GrammarError(ValueError):
    """A token sequence (or a report) the template does not allow."""


@dataclass
class ParseState:
    """Where the automaton stands after a prefix; `allowed` are the next token ids."""

    fields: dict = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    stated: dict = field(default_factory=dict)
    finding_stated: list[dict] = field(default_factory=list)
    comment: list[int] = field(default_factory=list)
    value_positions: dict[str, int] = field(
        default_factory=dict
    )  # "fields.x"/"findings[0].y" -> index
    finding_spans: list[tuple[int, int]] = field(default_factory=list)
    allowed: frozenset[int] = frozenset()
    done: bool = False


class TemplateGrammar:
    def __init__(self, template: Template, vocab: ReportVocab):
        self.template = template
        self.vocab = vocab
        self._check_order()
        ids = vocab.id
        self._value_sets: dict[str, frozenset[int]] = {}
        for spec in [*template.fields, *template.finding_fields]:
            if not spec.drafted:  # a reader's field: never written, no token
                continue
            if spec.type == "enum":
                allowed = {ids(V.value_token(v)) for v in spec.values}
            elif spec.type == "bool":
                allowed = {ids(V.TRUE), ids(V.FALSE)}
            elif spec.type == "number":
                allowed = {ids(V.number_token(n)) for n in V.number_grid(spec)}
            else:
                continue
            if not spec.required:
                allowed.add(ids(V.ABSENT))
            self._value_sets[spec.id] = frozenset(allowed)
        for derived in [*template.derived_finding, *template.derived_report]:
            allowed = {ids(V.value_token(v)) for v in derived.values}
            if derived.default is None:  # the rules may leave it undetermined
                allowed.add(ids(V.ABSENT))
            self._value_sets[derived.id] = frozenset(allowed)
        self._text_ids = frozenset(range(vocab.sp_offset, len(vocab)))
        self.hidden: frozenset[str] = frozenset()  # fields the study cannot support
        self.unseen: dict[str, frozenset[int]] = {}  # value ids the study cannot show, by field
        self.finding_cap: int | None = None  # at most this many findings (see `at_most`)
        self.finding_floor: int = 0  # at least this many findings (see `at_least`)
        self.measured: tuple[dict[str, str], ...] = ()  # see `measured_by`
        self.study_measured: dict[str, object] = {}  # see `study_measured_as`

    def measured_by(self, candidates: list[dict[str, str]]) -> TemplateGrammar:
        """This automaton for a study whose outlined candidates measured these finding
        values (per candidate, field id -> value: side, clock face, size). A finding's
        measured field may only take a value that a candidate agreeing with the finding's
        earlier measured fields measured: the size written is the size measured of the
        lesion at the side and clock face written. A radiologist measures a lesion and
        writes that number; the decoder, left to write sizes itself, wrote the measured
        size 4 times in 10 and erred by 3.8 mm where the measurement erred by 2.6 mm (120
        validation phantoms). Each candidate is one lesion: a candidate an earlier finding
        stated in full is taken, so two findings never copy one lesion's values (a forced
        prostate study drafted two findings with one candidate's side, clock face and size).
        Where no candidate agrees, the field is not restricted."""
        measured = tuple(dict(c) for c in candidates)
        if measured == self.measured:
            return self
        other = copy.copy(self)
        other.measured = measured
        return other

    def study_measured_as(self, values: dict[str, object]) -> TemplateGrammar:
        """This automaton for a study whose report-level fields were measured (field id ->
        value, e.g. skin thickening from the skin's measured thickness): each such field
        may only state its measured value, as a finding's side and size may only state
        what its candidate measured. A value the field cannot take leaves it free."""
        values = dict(values)
        if values == self.study_measured:
            return self
        other = copy.copy(self)
        other.study_measured = values
        return other

    def _study_value(self, spec: FieldSpec) -> frozenset[int] | None:
        """The value id a measured report-level field must take (None: unrestricted)."""
        if spec.id not in self.study_measured:
            return None
        value = self.study_measured[spec.id]
        if spec.type == "bool":
            token = V.TRUE if value else V.FALSE
        elif spec.type == "number":
            token = V.number_token(str(value))
        else:
            token = V.value_token(str(value))
        ids = frozenset({self.vocab.id(token)}) if token in self.vocab.tokens else frozenset()
        return (ids & self._value_sets[spec.id]) or None

    def _unclaimed(self, earlier: list[dict]) -> list[dict[str, str]]:
        """The measured candidates no earlier finding stated in full (each claims one)."""
        free = list(self.measured)
        for values in earlier:
            for c in free:
                if all(str(values.get(k)) == v for k, v in c.items()):
                    free.remove(c)
                    break
        return free

    def _measured_values(
        self, spec: FieldSpec, values: dict, earlier: list[dict]
    ) -> frozenset[int] | None:
        """Value ids a finding's measured field may take (None: unrestricted), given the
        findings written before it."""
        agreeing = [
            c
            for c in self._unclaimed(earlier)
            if spec.id in c and all(str(values.get(k)) == v for k, v in c.items() if k in values)
        ]
        if not agreeing:
            return None
        if spec.type == "number":
            tokens = {V.number_token(c[spec.id]) for c in agreeing}
        else:
            tokens = {V.value_token(c[spec.id]) for c in agreeing}
        ids = frozenset(self.vocab.id(t) for t in tokens if t in self.vocab.tokens)
        return (ids & self._value_sets[spec.id]) or None

    def _check_order(self) -> None:
        """Conditions may only look at earlier fields, or the automaton could not decide."""
        from reportgen.report.rules import referenced_fields

        for group in (self.template.fields, self.template.finding_fields):
            seen = (
                {f.id for f in self.template.fields}
                if group is self.template.finding_fields
                else set()
            )
            for spec in group:
                for name, _ in referenced_fields(spec.applicable_if or {}):
                    if name not in seen:
                        raise GrammarError(
                            f"template {self.template.id}: condition of {spec.id!r} uses {name!r}, "
                            "which is not an earlier field"
                        )
                seen.add(spec.id)

    # -- the automaton -------------------------------------------------------------------------
    def for_sequences(self, sequences: list[str] | tuple[str, ...]) -> TemplateGrammar:
        """This automaton for a study with these sequences: fields they cannot support
        (`reportgen.report.assessable`) are skipped, and values they cannot show (a non-mass
        enhancement without contrast) are not offered, so neither can ever be written."""
        hidden = not_assessable(self.template, sequences)
        unseen = {
            field_id: frozenset(self.vocab.id(V.value_token(v)) for v in values)
            for field_id, values in unseen_values(self.template, sequences).items()
            if field_id in self._value_sets
        }
        if hidden == self.hidden and unseen == self.unseen:
            return self
        other = copy.copy(self)
        other.hidden = hidden
        other.unseen = unseen
        return other

    def at_most(self, findings: int) -> TemplateGrammar:
        """This automaton writing at most `findings` findings (never under the template's
        minimum). With measured evidence that is one per lesion the model outlined: a
        finding it could not place has no box, no measured side or size, and was on
        validation phantoms always a false finding."""
        if findings == self.finding_cap:
            return self
        other = copy.copy(self)
        other.finding_cap = findings
        return other

    def at_least(self, findings: int) -> TemplateGrammar:
        """This automaton writing at least `findings` findings (never over the template's
        maximum or `at_most`'s cap): with a gate that decided which candidates are
        lesions, one finding for each, so the decoder cannot leave a found lesion out."""
        if findings == self.finding_floor:
            return self
        other = copy.copy(self)
        other.finding_floor = findings
        return other

    def _applicable(self, spec: FieldSpec, values: dict, parent: dict | None) -> bool:
        if spec.id in self.hidden or not spec.drafted:
            return False
        if not spec.applicable_if:
            return True
        scope = Scope(values, parent=Scope(parent) if parent is not None else None)
        return evaluate(spec.applicable_if, scope)

    def _value(self, spec: FieldSpec, token: str):
        if token == V.ABSENT:
            return None
        if spec.type == "bool":
            return token == V.TRUE
        if spec.type == "number":
            number = float(token[3:-1])
            return int(number) if spec.decimals == 0 else number
        return token[3:-1]

    def parse(self, ids: list[int]) -> ParseState:
        """Replay a prefix (without <bos>); raises GrammarError on a forbidden token."""
        state = ParseState()
        t = self.template
        pos = 0
        tokens = self.vocab.token

        def expect(allowed: frozenset[int]) -> int | None:
            nonlocal pos
            if pos == len(ids):
                state.allowed = allowed
                return None
            token = ids[pos]
            if token not in allowed:
                raise GrammarError(f"token {tokens(token)!r} at {pos} is not allowed here")
            pos += 1
            return token

        def fill(specs: list[FieldSpec], values: dict, parent: dict | None, where: str) -> bool:
            for spec in specs:
                if spec.type == "text" or not self._applicable(spec, values, parent):
                    continue
                if expect(frozenset({self.vocab.id(V.field_token(spec.id))})) is None:
                    return False
                allowed = self._value_sets[spec.id]
                if parent is not None and self.measured:
                    earlier = state.findings[:-1]
                    allowed = self._measured_values(spec, values, earlier) or allowed
                if parent is None and self.study_measured:
                    allowed = self._study_value(spec) or allowed
                if spec.id in self.unseen:
                    allowed = allowed - self.unseen[spec.id]
                token = expect(allowed)
                if token is None:
                    return False
                value = self._value(spec, tokens(token))
                if value is not None:
                    values[spec.id] = value
                    state.value_positions[f"{where}.{spec.id}"] = pos - 1
            return True

        if not fill(t.fields, state.fields, None, "fields"):
            return state
        finding, end = self.vocab.id(V.FINDING), self.vocab.id(V.FINDINGS_END)
        most = t.finding_max
        if self.finding_cap is not None:
            most = max(t.finding_min, min(most, self.finding_cap))
        while True:
            options = set()
            if len(state.findings) < most:
                options.add(finding)
            if len(state.findings) >= max(t.finding_min, min(self.finding_floor, most)):
                options.add(end)
            token = expect(frozenset(options))
            if token is None:
                return state
            if token == end:
                break
            start = pos - 1
            values: dict = {}
            state.findings.append(values)
            where = f"findings[{len(state.findings) - 1}]"
            if not fill(t.finding_fields, values, state.fields, where):
                return state
            stated: dict = {}
            state.finding_stated.append(stated)
            if not self._derived(expect, t.derived_finding, stated, state, where, lambda: pos):
                return state
            state.finding_spans.append((start, pos))
        if not self._derived(expect, t.derived_report, state.stated, state, "derived", lambda: pos):
            return state
        if expect(frozenset({self.vocab.id(V.COMMENT)})) is None:
            return state
        eos = self.vocab.id(V.EOS)
        while True:
            text_ok = self._text_ids if len(state.comment) < MAX_COMMENT_PIECES else frozenset()
            token = expect(text_ok | {eos})
            if token is None:
                return state
            if token == eos:
                break
            state.comment.append(token)
        if pos != len(ids):
            raise GrammarError("tokens after <eos>")
        state.done = True
        state.allowed = frozenset()
        return state

    def _derived(
        self, expect, specs, stated: dict, state: ParseState, where: str, position
    ) -> bool:
        """The model's own derived results (`<f:id> <v:value>`), checked later against rules."""
        for derived in specs:
            if expect(frozenset({self.vocab.id(V.field_token(derived.id))})) is None:
                return False
            token = expect(self._value_sets[derived.id])
            if token is None:
                return False
            if token != self.vocab.id(V.ABSENT):
                stated[derived.id] = self.vocab.token(token)[3:-1]
            state.value_positions[f"{where}.{derived.id}"] = position() - 1
        return True

    def allowed(self, ids: list[int]) -> frozenset[int]:
        return self.parse(ids).allowed

    # -- reports -> tokens (training targets) --------------------------------------------------
    def encode(self, report: Report) -> list[int]:
        """The token sequence of a report (with <bos> and <eos>); it follows the grammar."""
        t, ids = self.template, self.vocab.id
        out = [self.vocab.bos_id]

        def value_ids(spec: FieldSpec, value) -> int:
            if value is None:
                return ids(V.ABSENT)
            if spec.type == "bool":
                return ids(V.TRUE if value else V.FALSE)
            if spec.type == "number":
                return ids(V.number_token(f"{float(value):.{spec.decimals}f}"))
            return ids(V.value_token(str(value)))

        def fill(specs: list[FieldSpec], values: dict, parent: dict | None) -> None:
            for spec in specs:
                if spec.type == "text" or not self._applicable(spec, values, parent):
                    continue
                out.extend([ids(V.field_token(spec.id)), value_ids(spec, values.get(spec.id))])

        def stated(specs, values: dict) -> None:
            for derived in specs:
                value = values.get(derived.id)
                if value is None and derived.default is not None:
                    raise GrammarError(f"report has no derived {derived.id!r}")
                token = V.ABSENT if value is None else V.value_token(str(value.value))
                out.extend([ids(V.field_token(derived.id)), ids(token)])

        report_values = plain(report.fields)
        fill(t.fields, report_values, None)
        for finding in report.findings:
            out.append(ids(V.FINDING))
            fill(t.finding_fields, plain(finding.fields), report_values)
            stated(t.derived_finding, finding.derived)
        out.append(ids(V.FINDINGS_END))
        stated(t.derived_report, report.derived)
        out.append(ids(V.COMMENT))
        out.extend(self.vocab.encode_text(report.comment)[:MAX_COMMENT_PIECES])
        out.append(self.vocab.eos_id)
        self.parse(out[1:])  # raises if the report breaks the template
        return out
