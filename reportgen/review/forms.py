"""The report as a form: controls from the template, and the form's values back to a report.

Controls only offer what the template allows (enum values with preferred-term labels,
numbers with unit and range). Going back, derived results are recomputed by the
template's rules, so the page shows the stage or category the edited findings imply.
"""

from __future__ import annotations

from dataclasses import dataclass

from ontology.concepts import default_concepts
from ontology.normalise import Replacement, normalise_text
from reportgen.errors import ReportgenError
from reportgen.report import Report, Template, build_report
from reportgen.report.schema import Provenance, Scalar, clean_indication
from reportgen.report.template import FieldSpec


class FormError(ReportgenError):
    """A submitted form cannot be a report of this template (a malformed edit)."""


@dataclass(frozen=True)
class Control:
    id: str
    type: str  # enum | number | bool | text
    label: str
    # marked required only where it always applies: a field required when it applies
    # (a non-mass enhancement's distribution, never a mass's) is not marked
    required: bool
    options: tuple[tuple[str, str], ...] = ()  # (value id, label)
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float = 1.0


def _label(spec: FieldSpec, lang: str) -> str:
    return default_concepts()[spec.concept].pref(lang)


def controls(specs: list[FieldSpec], lang: str) -> list[Control]:
    concepts = default_concepts()
    out = []
    for spec in specs:
        out.append(
            Control(
                id=spec.id,
                type=spec.type,
                label=_label(spec, lang),
                required=spec.required and spec.applicable_if is None,
                options=tuple((v, concepts[v].pref(lang)) for v in spec.values),
                unit=spec.unit if spec.unit != "1" else None,  # a count ("1", UCUM) shows none
                minimum=spec.range[0] if spec.range else None,
                maximum=spec.range[1] if spec.range else None,
                step=10.0**-spec.decimals,
            )
        )
    return out


def form_values(report: Report) -> dict:
    """A report's values as the form holds them (what the page starts from)."""
    return {
        "fields": {k: v.value for k, v in report.fields.items()},
        "findings": [{k: v.value for k, v in f.fields.items()} for f in report.findings],
        "comment": report.comment,
        "indication": report.study.indication or "",
    }


def check_notes(report: Report, lang: str, findings_now: int) -> dict:
    """The draft's values to check (calibrated confidence below the model's threshold),
    as the form marks them: {"fields": {id: note}, "findings": [{id: note}, ...]}. The
    findings' marks follow the draft's order, so they are left off once the reader has
    added or removed a finding (`findings_now` differs)."""
    from reportgen.render.notes import check_note

    def notes(values: dict) -> dict[str, str]:
        return {k: n for k, v in values.items() if (n := check_note(v, report, lang))}

    return {
        "fields": notes(report.fields),
        "findings": [notes(f.fields) for f in report.findings]
        if findings_now == len(report.findings)
        else [],
    }


def _coerce(spec: FieldSpec, raw: object, where: str) -> Scalar | None:
    if raw is None or raw == "":
        return None
    if spec.type == "number":
        if isinstance(raw, bool):
            raise FormError(f"{where}: expected a number in {spec.unit}, got {raw!r}")
        try:
            number = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise FormError(f"{where}: expected a number in {spec.unit}, got {raw!r}") from exc
        if number != number or number in (float("inf"), float("-inf")):
            raise FormError(f"{where}: expected a finite number, got {raw!r}")
        return number
    if spec.type == "bool":
        if isinstance(raw, bool):
            return raw
        if raw in ("true", "on", "1"):
            return True
        if raw in ("false", "off", "0"):
            return False
        raise FormError(f"{where}: expected true or false, got {raw!r}")
    if not isinstance(raw, str):
        raise FormError(f"{where}: expected text, got {raw!r}")
    if spec.type == "enum" and raw not in spec.values:
        raise FormError(f"{where}: {raw[:64]!r} is not one of the template's values")
    return raw


def _values(template: Template, raw: object, level: str, where: str) -> dict[str, Scalar]:
    if not isinstance(raw, dict):
        raise FormError(f"{where}: expected an object of field values")
    out: dict[str, Scalar] = {}
    for key, value in raw.items():
        if not template.has_field(key) or template.field(key).level != level:
            raise FormError(f"{where}: {key!r} is not a {level}-level field of {template.id}")
        coerced = _coerce(template.field(key), value, f"{where}.{key}")
        if coerced is not None:
            out[key] = coerced
    return out


def comment_concepts(template: Template) -> list[str]:
    return sorted({v for spec in [*template.fields, *template.finding_fields] for v in spec.values})


def report_from_form(
    template: Template, draft: Report, form: object, clinician_id: int, lang: str = "en"
) -> tuple[Report, list[Replacement]]:
    """The edited report (derived results by the rules) and the comment's synonym swaps."""
    if not isinstance(form, dict) or set(form) - {"fields", "findings", "comment", "indication"}:
        raise FormError("an edit is an object with fields, findings, comment and indication")
    fields = _values(template, form.get("fields", {}), "report", "fields")
    findings_raw = form.get("findings", [])
    if not isinstance(findings_raw, list):
        raise FormError("findings: expected a list")
    if len(findings_raw) > template.finding_max:
        raise FormError(f"findings: at most {template.finding_max} allowed")
    findings = [
        _values(template, f, "finding", f"findings[{i}]") for i, f in enumerate(findings_raw)
    ]
    comment = form.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 4000:
        raise FormError("comment: expected text of at most 4000 characters")
    comment, swaps = normalise_text(comment.strip(), comment_concepts(template), lang)
    study = draft.study
    if "indication" in form:  # the requesting clinician's reason, as the reader corrects it
        indication = form["indication"]
        if not isinstance(indication, str):
            raise FormError("indication: expected text")
        try:
            cleaned = clean_indication(indication) if indication.strip() else None
        except ValueError as exc:
            raise FormError(f"indication: {exc}") from exc
        study = study.model_copy(update={"indication": cleaned})
    try:
        report = build_report(
            template,
            fields,
            findings,
            study=study,
            provenance=Provenance(
                source="human",
                clinician_id=str(clinician_id),
                model_name=draft.provenance.model_name,
                model_version=draft.provenance.model_version,
                checkpoint_sha256=draft.provenance.checkpoint_sha256,
            ),
            comment=comment,
            notice=draft.notice,
        )
    except ReportgenError as exc:
        raise FormError(str(exc)) from exc
    return report, swaps
