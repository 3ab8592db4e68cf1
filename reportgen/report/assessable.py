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
from reportgen.report.schema import Report
from reportgen.report.template import FieldSpec, Template


def acquired_families(sequences: Iterable[str]) -> set[str]:
    """The families a study's sequences give. Enhancement is a change from before contrast
    to after it, so "dce" needs the pre-contrast phase and at least one post-contrast
    phase: a lone post-contrast volume shows no enhancement, kinetics or BPE."""
    names = set(sequences)
    families = {f for name in names if (f := sequence_family(name)) not in (None, "dce")}
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


def missing_families(spec: FieldSpec, sequences: Iterable[str]) -> list[str]:
    have = acquired_families(sequences)
    return [f for f in spec.requires if f not in have]


def restrict_to_study(report: Report, template: Template, sequences: Iterable[str]) -> Report:
    """A copy of `report` without values the given sequences cannot support (the truth a
    draft from those sequences is scored against)."""
    hidden = not_assessable(template, sequences)
    if not hidden:
        return report
    copy = report.model_copy(deep=True)
    copy.fields = {k: v for k, v in copy.fields.items() if k not in hidden}
    for finding in copy.findings:
        finding.fields = {k: v for k, v in finding.fields.items() if k not in hidden}
    return copy
