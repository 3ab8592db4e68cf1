"""Derived results (quadrant, per-finding category, assessment, stage) by template rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reportgen.report.assessable import acquired_families
from reportgen.report.rules import Scope, evaluate
from reportgen.report.schema import Scalar
from reportgen.report.template import DerivedSpec, Template


def _first_match(spec: DerivedSpec, scope: Scope) -> str | None:
    for cond, value in spec.rules:
        if evaluate(cond, scope):
            return value
    return spec.default


def derive(
    template: Template,
    fields: Mapping[str, Scalar],
    findings: Sequence[Mapping[str, Scalar]],
    stated_report: Mapping[str, Scalar] | None = None,
    sequences: Sequence[str] | None = None,
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Finding-level then report-level derived values; later rules see earlier results.

    `stated_report` lets report-level rules that depend on another derived value (e.g.
    management from assessment) follow a value a clinician stated instead of the rule's.
    `sequences`, the study's, let rules ask what was acquired (`{acquired: dce}`); without
    them every family counts as acquired.
    """
    families = frozenset(acquired_families(sequences)) if sequences else None
    report_scope = Scope(dict(fields), families=families)
    finding_values: list[dict[str, Scalar]] = []
    finding_derived: list[dict[str, str]] = []
    for finding in findings:
        values = dict(finding)
        derived: dict[str, str] = {}
        for spec in template.derived_finding:
            result = _first_match(spec, Scope(values, parent=report_scope))
            if result is not None:
                derived[spec.id] = result
                values[spec.id] = result
        finding_values.append(values)
        finding_derived.append(derived)
    values = dict(fields)
    report_derived: dict[str, str] = {}
    for spec in template.derived_report:
        result = _first_match(spec, Scope(values, findings=finding_values, families=families))
        if result is not None:
            report_derived[spec.id] = result
        chosen = (stated_report or {}).get(spec.id, result)
        if chosen is not None:
            values[spec.id] = chosen
    return finding_derived, report_derived
