"""FHIR R4 (R4B models of fhir.resources): a Bundle with a DiagnosticReport and Observations.

One Observation per report-level field and derived result, one per finding with a
component per finding field; the DiagnosticReport cites them all, codes the procedure
from the template, and puts the assessment or stage in `conclusionCode`. fhir.resources
checks structure but not value sets, so codes come only from the ontology (checked by
`reportgen validate`) and statuses from a fixed map.

The notice and every validation problem go with the report (R4's DiagnosticReport has no
`note`): each as an extension (`NOTE_EXTENSION`), and the notice and the warnings about the
study itself (a forced draft of another region, an unusual study) also open the
`conclusion`, so a system that shows only the conclusion still shows them.
"""

from __future__ import annotations

import uuid

from fhir.resources.R4B.bundle import Bundle

from ontology.concepts import ConceptTable, default_concepts
from reportgen.render.notes import report_notes, signed_problems
from reportgen.report.schema import Report, Value
from reportgen.report.template import FieldSpec, Template, load_template

STATUS = {
    "model": "preliminary",
    "synthetic": "preliminary",
    "parser": "preliminary",
    "human": "final",
}
UCUM = "http://unitsofmeasure.org"
NOTE_EXTENSION = "urn:reportgen:fhir:extension:report-note"


def _coding(cid: str, concepts: ConceptTable) -> dict:
    code = concepts[cid].primary
    coding = {"system": code.system, "code": code.code, "display": code.display}
    return {"coding": [coding], "text": concepts[cid].en}


def _value(spec_type: str, unit: str | None, value: Value, concepts: ConceptTable) -> dict:
    if spec_type == "enum":
        return {"valueCodeableConcept": _coding(str(value.value), concepts)}
    if spec_type == "number":
        return {"valueQuantity": {"value": value.value, "unit": unit, "system": UCUM, "code": unit}}
    if spec_type == "bool":
        return {"valueBoolean": bool(value.value)}
    return {"valueString": str(value.value)}


def _uid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _study_warnings(report: Report) -> list[str]:
    """The notice, then the warnings about the study as a whole, as sentences."""
    problems = signed_problems(report)
    notice = report.notice or report_notes(report)[0]
    return [
        f"[{notice}]",
        *(f"[Warning: {p.message}]" for p in problems if p.where == "study"),
    ]


def to_fhir_bundle(
    report: Report, template: Template | None = None, concepts: ConceptTable | None = None
) -> Bundle:
    template = template or load_template(report.template.id)
    concepts = concepts or default_concepts()
    status = STATUS[report.provenance.source]
    subject = {"identifier": {"system": "urn:reportgen:study", "value": report.study.study_id}}
    entries, refs = [], []

    def observation(code_cid: str, body: dict) -> None:
        full = _uid()
        resource = {
            "resourceType": "Observation",
            "status": status,
            "code": _coding(code_cid, concepts),
            "subject": subject,
            **body,
        }
        entries.append({"fullUrl": full, "resource": resource})
        refs.append({"reference": full})

    def spec_of(field_id: str) -> FieldSpec:
        return template.field(field_id)

    measured = report.study.measurements or {}
    for key, value in report.fields.items():
        spec = spec_of(key)
        body = _value(spec.type, spec.unit, value, concepts)
        components = [
            {  # what the images measured behind the value, per side (no public code)
                "code": {"text": f"{spec.measurement_label['en']}, {side}"},
                "valueQuantity": {
                    "value": measured[name],
                    "unit": "mm",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm",
                },
            }
            for side in ("right", "left")
            if spec.measurement
            and spec.measurement_label
            and (name := f"{spec.measurement}_{side}_mm") in measured
        ]
        observation(spec.concept, {**body, **({"component": components} if components else {})})
    for finding in report.findings:
        components = []
        for key, value in finding.fields.items():
            spec = spec_of(key)
            components.append(
                {
                    "code": _coding(spec.concept, concepts),
                    **_value(spec.type, spec.unit, value, concepts),
                }
            )
        for key, value in finding.derived.items():
            components.append(
                {
                    "code": _coding(template.derived(key).concept, concepts),
                    **_value("enum", None, value, concepts),
                }
            )
        observation(
            template.finding_concept,
            {
                "component": components,
                "identifier": [{"system": "urn:reportgen:finding", "value": finding.id}],
            },
        )
    conclusion_codes = []
    for key, value in report.derived.items():
        spec = template.derived(key)
        observation(spec.concept, _value("enum", None, value, concepts))
        conclusion_codes.append(_coding(str(value.value), concepts))
    diagnostic = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": _coding(template.procedure, concepts),
        "subject": subject,
        # the clinically relevant time: the day the study was done, where it is known
        **({"effectiveDateTime": report.study.study_date} if report.study.study_date else {}),
        "result": refs,
        "conclusion": " ".join(
            [
                *_study_warnings(report),
                *(
                    template.derived(key).phrase["en"].format(value=concepts[str(v.value)].en)
                    for key, v in report.derived.items()
                    if template.derived(key).phrase
                ),
            ]
        ),
        "conclusionCode": conclusion_codes,
        "extension": [
            {"url": NOTE_EXTENSION, "valueString": text} for text in report_notes(report)
        ],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": _uid(), "resource": diagnostic}, *entries],
    }
    return Bundle.model_validate(bundle)
