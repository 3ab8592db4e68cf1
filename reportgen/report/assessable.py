"""What a study can show: fields read from a sequence the study lacks are not assessable.

A template field may declare `requires: [dce]` (kinetics, background enhancement) or
`requires: [diffusion]`; a study without any sequence of that family cannot support a
value for it. Such a field is never written (the template automaton skips it), never
demanded (validation does not call it missing), and is said to be not assessable in the
text. Evaluation holds the truth to the same rule, so an honest "not assessable" is not
scored as a wrong value.
"""

from __future__ import annotations

from collections.abc import Iterable

from reportgen.io.sequences import sequence_family
from reportgen.report.schema import Report, Value
from reportgen.report.template import FieldSpec, Template


def acquired_families(sequences: Iterable[str]) -> set[str]:
    """The families a study's sequences give. Enhancement is a change from before contrast
    to after it, so "dce" needs the pre-contrast phase and at least one post-contrast
    phase: a lone post-contrast volume shows no enhancement, kinetics or BPE. A CT
    phase of any kind gives "ct"; an enhanced one (pancreatic, portal venous) also
    "ct_contrast": vessel contact and a tumour's attenuation against enhanced pancreas."""
    names = set(sequences)
    families = {f for name in names if (f := sequence_family(name)) not in (None, "dce")}
    if "ct_contrast" in families:
        families.add("ct")
    phases = {name for name in names if sequence_family(name) == "dce"}
    if "DCE_0" in phases and len(phases) >= 2:
        families.add("dce")
    return families


def not_assessable(template: Template, sequences: Iterable[str] | None) -> frozenset[str]:
    """Ids of the template's fields the study's sequences cannot support (none when the
    sequences are not known)."""
    sequences = list(sequences or [])
    if not sequences:
        return frozenset()
    have = acquired_families(sequences)
    return frozenset(
        spec.id
        for spec in [*template.fields, *template.finding_fields]
        if spec.requires and not set(spec.requires) <= have
    )


def unseen_values(template: Template, sequences: Iterable[str] | None) -> dict[str, frozenset[str]]:
    """Per field id, the enum values the study's sequences cannot show (`value_requires`:
    a non-mass enhancement without a contrast series); empty when the sequences are not
    known."""
    sequences = list(sequences or [])
    if not sequences:
        return {}
    have = acquired_families(sequences)
    found = {
        spec.id: spec.values_unseen(have) for spec in [*template.fields, *template.finding_fields]
    }
    return {k: v for k, v in found.items() if v}


def missing_families(spec: FieldSpec, sequences: Iterable[str]) -> list[str]:
    have = acquired_families(sequences)
    return [f for f in spec.requires if f not in have]


def restrict_to_study(report: Report, template: Template, sequences: Iterable[str]) -> Report:
    """A copy of `report` as these sequences can show it (the truth a draft from them is
    scored against): without the values they cannot support or show, without the findings
    only a family they lack shows (a non-mass enhancement without contrast), and, where
    the report's results are the template's rules' own, with the results the rules give on
    what remains (a breast study without contrast is incomplete: BI-RADS 0). Results a
    reader stated against the rules (a parsed clinical report) are kept as stated."""
    from reportgen.report.derive import derive
    from reportgen.report.values import coding_for, plain

    sequences = list(sequences)
    hidden = not_assessable(template, sequences)
    unseen = unseen_values(template, sequences)
    if not hidden and not unseen:
        return report

    def shown(fields: dict) -> dict:
        return {
            k: v for k, v in fields.items() if k not in hidden and v.value not in unseen.get(k, ())
        }

    def stated(r: Report) -> tuple[list[dict], dict]:
        return [plain(f.derived) for f in r.findings], plain(r.derived)

    fields = [plain(f.fields) for f in report.findings]
    rules_own = stated(report) == tuple(derive(template, plain(report.fields), fields))
    copy = report.model_copy(deep=True)
    copy.fields = shown(copy.fields)
    copy.findings = [
        f
        for f in copy.findings
        if not any(
            v.value in unseen.get(k, ()) and template.field(k).required for k, v in f.fields.items()
        )
    ]
    for finding in copy.findings:
        finding.fields = shown(finding.fields)
    if rules_own:
        by_finding, by_report = derive(
            template,
            plain(copy.fields),
            [plain(f.fields) for f in copy.findings],
            sequences=sequences,
        )
        for finding, derived in zip(copy.findings, by_finding, strict=True):
            finding.derived = {k: Value(value=v, concept=coding_for(v)) for k, v in derived.items()}
        copy.derived = {k: Value(value=v, concept=coding_for(v)) for k, v in by_report.items()}
    return copy
