"""`reportgen validate`: schema, template and ontology/consistency checks of a report.

Errors make a report invalid; warnings are shown but do not (a rule-derived value that
differs from what the report states is a warning: a clinician may overrule the rules,
and the contradiction must be visible, not hidden).
"""

from __future__ import annotations

from collections.abc import Mapping

from ontology.concepts import ConceptTable, default_concepts
from reportgen.report.assessable import not_assessable, unseen_values
from reportgen.report.derive import derive
from reportgen.report.rules import Scope, evaluate
from reportgen.report.schema import STUDY_NOTE, Problem, Report, Validation, Value
from reportgen.report.template import FieldSpec, Template, load_template
from reportgen.report.values import plain


def _check_value(
    spec: FieldSpec, value: Value, where: str, concepts: ConceptTable, problems: list[Problem]
) -> None:
    def error(message: str) -> None:
        problems.append(Problem(severity="error", where=where, message=message))

    raw = value.value
    if spec.type == "enum":
        if raw not in spec.values:
            error(f"{raw!r} is not allowed; allowed: {', '.join(spec.values)}")
            return
        expected = concepts[str(raw)].primary
        if value.concept is None:
            error(f"{raw!r} carries no concept code")
        elif (value.concept.system, value.concept.code) != (expected.system, expected.code):
            error(
                f"code {value.concept.system}|{value.concept.code} does not match the ontology's {expected.system}|{expected.code} for {raw!r}"
            )
    elif spec.type == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            error(f"expected a number, got {raw!r}")
            return
        low, high = spec.range or (float("-inf"), float("inf"))
        if not low <= raw <= high:
            error(
                f"{raw:g} {spec.unit or ''} is outside the allowed range {low:g}-{high:g} {spec.unit or ''}".replace(
                    "  ", " "
                )
            )
        if value.unit != spec.unit:
            error(f"unit must be {spec.unit!r}, got {value.unit!r}")
    elif spec.type == "bool":
        if not isinstance(raw, bool):
            error(f"expected true or false, got {raw!r}")
    elif not isinstance(raw, str):
        error(f"expected text, got {raw!r}")


def _check_fields(
    specs: list[FieldSpec],
    values: Mapping[str, Value],
    scope: Scope,
    prefix: str,
    concepts: ConceptTable,
    problems: list[Problem],
    hidden: frozenset[str] = frozenset(),
    unseen: Mapping[str, frozenset[str]] | None = None,
) -> None:
    unseen = unseen or {}
    known = {s.id for s in specs}
    for name in values:
        if name not in known:
            problems.append(
                Problem(
                    severity="error",
                    where=f"{prefix}{name}",
                    message="not a field of this template",
                )
            )
    for spec in specs:
        where = f"{prefix}{spec.id}"
        applicable = spec.applicable_if is None or evaluate(spec.applicable_if, scope)
        if spec.id in values and spec.id in hidden:
            problems.append(
                Problem(
                    severity="error",
                    where=where,
                    message=f"not assessable: the study has no {'/'.join(spec.requires)} "
                    "sequence to read it from",
                )
            )
        elif spec.id in values and values[spec.id].value in unseen.get(spec.id, ()):
            families = "/".join(
                f for v, need in spec.value_requires if v == values[spec.id].value for f in need
            )
            problems.append(
                Problem(
                    severity="error",
                    where=where,
                    message=f"{values[spec.id].value} is seen only on {families}; the study has "
                    f"no {families} sequence",
                )
            )
        elif spec.id in values:
            if not applicable:
                problems.append(
                    Problem(
                        severity="error",
                        where=where,
                        message="does not apply here (its condition is not met)",
                    )
                )
            else:
                _check_value(spec, values[spec.id], where, concepts, problems)
        elif spec.required and applicable and spec.id not in hidden:
            problems.append(Problem(severity="error", where=where, message="required but missing"))


def _check_derived(
    template: Template, report: Report, concepts: ConceptTable, problems: list[Problem]
) -> None:
    fields = plain(report.fields)
    findings = [plain(f.fields) for f in report.findings]
    stated = plain(report.derived)
    rule_findings, rule_report = derive(
        template, fields, findings, stated_report=stated, sequences=report.study.sequences_used
    )
    for i, (finding, expected) in enumerate(zip(report.findings, rule_findings, strict=True)):
        for key, value in finding.derived.items():
            if key not in {d.id for d in template.derived_finding}:
                problems.append(
                    Problem(
                        severity="error",
                        where=f"findings[{i}].derived.{key}",
                        message="not a derived field of this template",
                    )
                )
            elif expected.get(key) != value.value:
                problems.append(
                    Problem(
                        severity="warning",
                        where=f"findings[{i}].derived.{key}",
                        message=f"states {value.value!r} but the template's rules give {expected.get(key)!r}",
                    )
                )
    for spec in template.derived_report:
        where = f"derived.{spec.id}"
        if spec.id not in report.derived:
            problems.append(Problem(severity="error", where=where, message="missing"))
            continue
        value = report.derived[spec.id]
        if value.value not in spec.values:
            problems.append(
                Problem(
                    severity="error",
                    where=where,
                    message=f"{value.value!r} is not allowed; allowed: {', '.join(spec.values)}",
                )
            )
            continue
        expected_code = concepts[str(value.value)].primary
        if value.concept is None or (value.concept.system, value.concept.code) != (
            expected_code.system,
            expected_code.code,
        ):
            problems.append(
                Problem(
                    severity="error",
                    where=where,
                    message=f"code does not match the ontology's for {value.value!r}",
                )
            )
        if rule_report.get(spec.id) != value.value:
            problems.append(
                Problem(
                    severity="warning",
                    where=where,
                    rule="derivation",
                    message=f"states {value.value!r} but the template's rules give {rule_report.get(spec.id)!r}",
                )
            )
    for key in report.derived:
        if key not in {d.id for d in template.derived_report}:
            problems.append(
                Problem(
                    severity="error",
                    where=f"derived.{key}",
                    message="not a derived field of this template",
                )
            )


def validate_report(
    report: Report, template: Template | None = None, concepts: ConceptTable | None = None
) -> Validation:
    """Every problem with a report, against its template and the ontology."""
    concepts = concepts or default_concepts()
    problems: list[Problem] = []
    if template is None:
        template = load_template(report.template.id)
    if report.template.id != template.id:
        problems.append(
            Problem(
                severity="error",
                where="template.id",
                message=f"report is for {report.template.id!r}, not {template.id!r}",
            )
        )
        return Validation(valid=False, problems=problems)
    if report.template.version != template.version:
        problems.append(
            Problem(
                severity="warning",
                where="template.version",
                message=f"written for version {report.template.version}, checked against {template.version}",
            )
        )
    report_scope = Scope(plain(report.fields))
    hidden = not_assessable(template, report.study.sequences_used)
    unseen = unseen_values(template, report.study.sequences_used)
    _check_fields(
        template.fields, report.fields, report_scope, "fields.", concepts, problems, hidden, unseen
    )
    n = len(report.findings)
    if not template.finding_min <= n <= template.finding_max:
        problems.append(
            Problem(
                severity="error",
                where="findings",
                message=f"{n} findings; this template takes {template.finding_min} to {template.finding_max}",
            )
        )
    ids = [f.id for f in report.findings]
    if len(set(ids)) != len(ids):
        problems.append(
            Problem(severity="error", where="findings", message="finding ids must be unique")
        )
    for i, finding in enumerate(report.findings):
        scope = Scope(plain(finding.fields), parent=report_scope)
        _check_fields(
            template.finding_fields,
            finding.fields,
            scope,
            f"findings[{i}].",
            concepts,
            problems,
            hidden,
            unseen,
        )
    # Derivation and consistency run whatever else is wrong: a contradiction is never hidden
    # behind another error (rules treat a missing or malformed field as not matching).
    _check_derived(template, report, concepts, problems)
    values = {**plain(report.fields), **plain(report.derived)}
    findings = [{**plain(f.fields), **plain(f.derived)} for f in report.findings]
    for rule in template.consistency:
        if evaluate(rule.when, Scope(values, findings=findings)):
            problems.append(
                Problem(
                    severity=rule.severity, where="report", rule=rule.id, message=rule.message["en"]
                )
            )
    return Validation(valid=not any(p.severity == "error" for p in problems), problems=problems)


def revalidate(
    report: Report, template: Template | None = None, drafted: Report | None = None
) -> Validation:
    """A stored or edited report checked again, keeping the notes drafting made on its
    study (`STUDY_NOTE`: drafted with --force, unlike the training studies) from the
    `drafted` report (default: this one): nothing after drafting can judge them again,
    and no later output or edit may lose them."""
    fresh = validate_report(report, template)
    notes = [
        p
        for p in (drafted or report).validation.problems
        if p.where == STUDY_NOTE and p not in fresh.problems
    ]
    return Validation(valid=fresh.valid, problems=notes + fresh.problems)
