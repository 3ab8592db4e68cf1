"""Calibrated confidence, and which values the reader should check.

A model's per-value confidence is the probability it gave its own answer; it becomes a
statement the radiologist can rely on ("right 9 times in 10") only once mapped onto how
often answers of that confidence were right on studies the model never saw. A
`Calibration` holds that map per field (isotonic: monotone, fit on held-out calibration
phantoms by `reportgen calibrate`), pooled over all fields where one has too few examples,
and the threshold below which a value is marked for checking. A model folder's
`calibration.json` is applied to every draft the model writes; the threshold is written
into the report's provenance, so text, HTML, DICOM SR and the review form mark the same
values without knowing the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reportgen.report.schema import Report, Value

CALIBRATION_FILE = "calibration.json"
CHECK_BELOW = 0.80  # a value right less than 4 times in 5 on held-out studies is marked
POOLED = "*"  # the map for fields without enough examples of their own


@dataclass(frozen=True)
class Curve:
    """A monotone map from raw confidence to the observed rate of being right."""

    raw: tuple[float, ...]
    right: tuple[float, ...]

    def __call__(self, confidence: float) -> float:
        return float(np.interp(confidence, self.raw, self.right))


@dataclass
class Calibration:
    curves: dict[str, Curve]  # field id (or POOLED) -> curve
    check_below: float = CHECK_BELOW
    examples: dict[str, int] = field(default_factory=dict)  # what each curve was fit on

    def confidence(self, field_id: str, raw: float) -> float:
        curve = self.curves.get(field_id) or self.curves.get(POOLED)
        return round(curve(raw) if curve else raw, 4)

    def apply(self, report: Report) -> Report:
        """Replace every raw confidence of `report` by its calibrated one, in place, and
        record the threshold in its provenance."""
        for field_id, value in _values(report):
            if value.confidence is not None:
                value.confidence = self.confidence(field_id, value.confidence)
        report.provenance.check_below = self.check_below
        return report

    def to_json(self) -> str:
        return json.dumps(
            {
                "check_below": self.check_below,
                "curves": {
                    k: {"raw": list(c.raw), "right": list(c.right)} for k, c in self.curves.items()
                },
                "examples": self.examples,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        return cls(
            curves={
                k: Curve(tuple(float(x) for x in c["raw"]), tuple(float(y) for y in c["right"]))
                for k, c in data["curves"].items()
            },
            check_below=float(data.get("check_below", CHECK_BELOW)),
            examples={k: int(v) for k, v in data.get("examples", {}).items()},
        )

    @classmethod
    def load(cls, model_dir: Path) -> Calibration | None:
        """The model folder's calibration, or None when it was never calibrated."""
        path = Path(model_dir) / CALIBRATION_FILE
        return cls.from_json(path.read_text()) if path.is_file() else None


def _values(report: Report) -> Iterator[tuple[str, Value]]:
    yield from report.fields.items()
    for finding in report.findings:
        yield from finding.fields.items()


def needs_check(value: Value, check_below: float | None) -> bool:
    """True for a value whose calibrated confidence is below the model's threshold."""
    return (
        check_below is not None and value.confidence is not None and value.confidence < check_below
    )


def values_to_check(report: Report) -> list[str]:
    """Where each value to check is, as validation writes places ("fields.x",
    "findings[0].margin")."""
    limit = report.provenance.check_below
    out = [f"fields.{k}" for k, v in report.fields.items() if needs_check(v, limit)]
    for i, finding in enumerate(report.findings):
        out += [f"findings[{i}].{k}" for k, v in finding.fields.items() if needs_check(v, limit)]
    return out
