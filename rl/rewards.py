"""Rewards from corrections: how close a draft is to the report the clinician signed.

The one place the clinical weighting lives. A draft's reward is 1 minus its weighted
error share, minus a penalty per template/ontology violation:

| what is wrong                                    | weight                     |
|--------------------------------------------------|----------------------------|
| the template's headline (BI-RADS assessment, FIGO stage, O-RADS score) | 5.0 |
| a finding missed or invented (per finding)       | 3.0 + all its fields wrong |
| finding type, laterality                         | 2.0                        |
| lesion size                                      | 2.0 x min(1, rel. error)   |
| any other field (margin, kinetics, composition)  | 1.0                        |
| clock position                                   | 0.5 x hours off / 6        |
| any other derived result (management, category)  | 1.0                        |
| each validation error (template, ontology)       | penalty 0.5                |

so a wrong category costs most, a missed or invented finding more than a wrong clock
position, and a size error by how far it is off. Rewards lie in [-inf, 1]; 1 is a
draft the clinician signed unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reportgen.report import Report, load_template, validate_report
from reportgen.report.compare import align_findings, clock_hours, slots

HEADLINE_WEIGHT = 5.0
FINDING_PRESENCE_WEIGHT = 3.0
FIELD_WEIGHT = {"type": 2.0, "laterality": 2.0, "size_mm": 2.0, "clock": 0.5}
DEFAULT_WEIGHT = 1.0
VIOLATION_PENALTY = 0.5


@dataclass
class RewardBreakdown:
    reward: float
    error: float  # weighted error
    total: float  # weighted total (what a fully wrong draft would cost)
    violations: int
    per_field: dict[str, float] = field(default_factory=dict)  # field -> weighted error


def _field_error(name: str, truth, predicted) -> float:
    """Error share in [0, 1] of one field."""
    if truth == predicted:
        return 0.0
    if truth is None or predicted is None:
        return 1.0
    if name == "size_mm":
        return min(1.0, abs(float(predicted) - float(truth)) / max(float(truth), 1.0))
    if name == "clock" and isinstance(truth, str) and isinstance(predicted, str):
        return clock_hours(truth, predicted) / 6.0
    return 1.0


def _weight(name: str, headline: str) -> float:
    if name.startswith("derived."):
        return HEADLINE_WEIGHT if name == f"derived.{headline}" else DEFAULT_WEIGHT
    return FIELD_WEIGHT.get(name, DEFAULT_WEIGHT)


def violation_count(report: Report) -> int:
    """Template and ontology errors of a report (each costs `VIOLATION_PENALTY`)."""
    validation = validate_report(report, load_template(report.template.id))
    return sum(1 for p in validation.problems if p.severity == "error")


def correction_reward(draft: Report, signed: Report) -> RewardBreakdown:
    """The reward of `draft` against the report a clinician signed for the same study."""
    if draft.template.id != signed.template.id:
        raise ValueError("draft and signed report use different templates")
    headline = load_template(signed.template.id).headline
    error = total = 0.0
    per_field: dict[str, float] = {}
    # Fields of a missed or invented finding count as wrong too (on top of the presence
    # weight below), so leaving a finding out is never cheaper than describing it badly.
    for slot in slots(draft, signed, bool_default=True):
        weight = _weight(slot.field, headline)
        share = _field_error(slot.field, slot.truth, slot.predicted)
        error += weight * share
        total += weight
        if share:
            per_field[slot.field] = per_field.get(slot.field, 0.0) + weight * share
    pairs = align_findings(signed.findings, draft.findings)
    missed = len(signed.findings) - len(pairs)
    invented = len(draft.findings) - len(pairs)
    if missed or invented:
        per_field["finding_missed"] = FINDING_PRESENCE_WEIGHT * missed
        per_field["finding_invented"] = FINDING_PRESENCE_WEIGHT * invented
    error += FINDING_PRESENCE_WEIGHT * (missed + invented)
    total += FINDING_PRESENCE_WEIGHT * max(len(signed.findings), len(draft.findings), 1)
    violations = violation_count(draft)
    reward = 1.0 - error / max(total, 1e-9) - VIOLATION_PENALTY * violations
    return RewardBreakdown(reward, error, total, violations, per_field)
