"""Turning plain values into coded report values, and back."""

from __future__ import annotations

from collections.abc import Mapping

from ontology.concepts import ConceptTable, default_concepts
from reportgen.errors import ReportgenError
from reportgen.report.schema import Coding, Scalar, Value
from reportgen.report.template import FieldSpec


def coding_for(concept_id: str, concepts: ConceptTable | None = None) -> Coding:
    concepts = concepts or default_concepts()
    code = concepts[concept_id].primary
    return Coding(system=code.system, code=code.code, display=code.display, local=code.local)


def make_value(
    spec: FieldSpec,
    raw: Scalar,
    confidence: float | None = None,
    concepts: ConceptTable | None = None,
) -> Value:
    """A coded Value for a field; raises ReportgenError if `raw` cannot be that field's value."""
    if spec.type == "enum":
        if not isinstance(raw, str):
            raise ReportgenError(f"{spec.id}: expected one of {list(spec.values)}, got {raw!r}")
        return Value(
            value=raw,
            concept=coding_for(raw, concepts) if raw in (concepts or default_concepts()) else None,
            confidence=confidence,
        )
    if spec.type == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ReportgenError(f"{spec.id}: expected a number in {spec.unit}, got {raw!r}")
        number = round(float(raw), spec.decimals)
        return Value(
            value=int(number) if spec.decimals == 0 else number,
            unit=spec.unit,
            confidence=confidence,
        )
    if spec.type == "bool":
        if not isinstance(raw, bool):
            raise ReportgenError(f"{spec.id}: expected true or false, got {raw!r}")
        return Value(
            value=raw,
            concept=coding_for("present" if raw else "absent", concepts),
            confidence=confidence,
        )
    return Value(value=str(raw), confidence=confidence)


def plain(values: Mapping[str, Value]) -> dict[str, Scalar]:
    return {key: v.value for key, v in values.items()}
