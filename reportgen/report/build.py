"""Assemble a complete, coded report from plain values (used by synth, parser, model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reportgen.report.derive import derive
from reportgen.report.schema import (
    Finding,
    Problem,
    Provenance,
    Report,
    Scalar,
    StudyRef,
    TemplateRef,
    Value,
)
from reportgen.report.template import Template
from reportgen.report.validate import validate_report
from reportgen.report.values import coding_for, make_value


def build_report(
    template: Template,
    fields: Mapping[str, Scalar],
    findings: Sequence[Mapping[str, Scalar]],
    *,
    study: StudyRef,
    provenance: Provenance,
    stated: Mapping[str, str] | None = None,
    trust_stated: bool = False,
    confidences: Mapping[str, float] | None = None,
    finding_confidences: Sequence[Mapping[str, float]] | None = None,
    comment: str = "",
    notice: str | None = None,
) -> Report:
    """Code every value, derive results by the template's rules, and validate.

    `stated` are derived values someone asserted (a model's prediction, a clinician's
    assessment, a parsed impression). With `trust_stated` they are kept (a clinician's
    call) and any disagreement with the rules is flagged; otherwise the rules' values
    are kept and every disagreement with `stated` is reported as a problem.
    """
    confidences = confidences or {}
    report_fields = {
        key: make_value(template.field(key), value, confidences.get(key))
        for key, value in fields.items()
        if template.has_field(key)
    }
    coded_findings = []
    for i, finding in enumerate(findings):
        conf = finding_confidences[i] if finding_confidences else {}
        coded_findings.append(
            Finding(
                id=f"F{i + 1}",
                fields={
                    k: make_value(template.field(k), v, conf.get(k))
                    for k, v in finding.items()
                    if template.has_field(k)
                },
            )
        )
    rule_findings, rule_report = derive(
        template,
        dict(fields),
        [dict(f) for f in findings],
        stated_report=stated if trust_stated else None,
        sequences=study.sequences_used,
    )
    for finding, derived in zip(coded_findings, rule_findings, strict=True):
        finding.derived = {k: Value(value=v, concept=coding_for(v)) for k, v in derived.items()}
    chosen = dict(rule_report)
    if trust_stated and stated:
        chosen.update(
            {
                k: v
                for k, v in stated.items()
                if k in rule_report or k in {d.id for d in template.derived_report}
            }
        )
    report = Report(
        template=TemplateRef(id=template.id, version=template.version),
        study=study,
        fields=report_fields,
        findings=coded_findings,
        derived={k: Value(value=v, concept=coding_for(v)) for k, v in chosen.items()},
        comment=comment,
        provenance=provenance,
        notice=notice,
    )
    validation = validate_report(report, template)
    if stated and not trust_stated:
        for key, value in stated.items():
            if key in rule_report and rule_report[key] != value:
                validation.problems.append(
                    Problem(
                        severity="warning",
                        where=f"derived.{key}",
                        rule="prediction",
                        message=f"predicted {value!r} but the template's rules give {rule_report[key]!r}",
                    )
                )
    report.validation = validation
    return report
