"""How good a draft is against the truth: the one definition of every report metric.

`reportgen evaluate`, the refinement guard (`rl.refine`) and every bench score drafts
here, so a number in one table means the same as the same name in another.

Field accuracy counts every field that either report states, with findings aligned by
`reportgen.report.compare.slots`: a field the draft gets wrong, leaves out (a missed
finding's fields included) or invents (an invented finding's fields included) counts
against it; a missing boolean reads as false. A draft that writes nothing is therefore
never better than one that writes what it sees.

The headline is the template's declared `headline` result (BI-RADS assessment, FIGO
stage, O-RADS score), never a name written here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from reportgen.report.compare import Slot, align_findings, slots
from reportgen.report.schema import Report
from reportgen.report.template import Template


@dataclass
class FieldScores:
    """Per-field true/false positives and negatives, for field-level F1."""

    tp: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fp: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fn: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, items: list[Slot]) -> None:
        for s in items:
            if s.truth is not None and s.predicted == s.truth:
                self.tp[s.field] += 1
                continue
            if s.truth is not None:
                self.fn[s.field] += 1
            if s.predicted is not None:
                self.fp[s.field] += 1

    def f1(self) -> dict[str, float]:
        fields = set(self.tp) | set(self.fp) | set(self.fn)
        out = {}
        for k in sorted(fields):
            denom = 2 * self.tp[k] + self.fp[k] + self.fn[k]
            out[k] = 2 * self.tp[k] / denom if denom else 1.0
        return out

    def macro_f1(self) -> float:
        scores = self.f1()
        return float(np.mean(list(scores.values()))) if scores else 1.0

    def micro_f1(self) -> float:
        tp, fp, fn = sum(self.tp.values()), sum(self.fp.values()), sum(self.fn.values())
        return 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0


def scored_slots(draft: Report, truth: Report) -> list[Slot]:
    """The fields field accuracy counts: every aligned field either report states."""
    return [s for s in slots(draft, truth) if s.truth is not None or s.predicted is not None]


def field_accuracy(draft: Report, truth: Report) -> tuple[int, int]:
    """(correct, counted) fields of one draft; see the module docstring for what counts."""
    items = scored_slots(draft, truth)
    return sum(s.truth == s.predicted for s in items), len(items)


def size_errors_mm(draft: Report, truth: Report) -> list[float]:
    """Absolute size error of each aligned finding pair where both state a size."""
    errors = []
    for i, j in align_findings(truth.findings, draft.findings):
        t, p = truth.findings[i].fields.get("size_mm"), draft.findings[j].fields.get("size_mm")
        if t is not None and p is not None:
            errors.append(abs(float(p.value) - float(t.value)))
    return errors


def auroc(labels: list[int], scores: list[float]) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    if len(set(labels)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def empty_like(truth: Report) -> Report:
    """What a system that wrote nothing is scored as."""
    return Report(template=truth.template, study=truth.study, provenance=truth.provenance)


class ReportScores:
    """Accumulates drafts against their truth for one system; `summary()` gives the metrics."""

    def __init__(self, template: Template):
        self.headline = template.headline
        self.f1 = FieldScores()
        self.correct: dict[str, int] = defaultdict(int)
        self.counted: dict[str, int] = defaultdict(int)
        self.headline_pairs: list[tuple[str, str]] = []
        self.size_errors: list[float] = []
        self.size_relative: list[float] = []
        self.malignancy: list[tuple[int, float]] = []
        self.studies = 0

    def add(
        self,
        draft: Report | None,
        truth: Report,
        malignant: int | None = None,
        malignancy_probability: float | None = None,
    ) -> None:
        """Score one draft (None: the system wrote nothing readable) against its truth."""
        self.studies += 1
        shown = draft if draft is not None else empty_like(truth)
        items = scored_slots(shown, truth)
        self.f1.add(items)
        for s in items:
            self.counted[s.field] += 1
            self.correct[s.field] += int(s.truth == s.predicted)
        t_head, p_head = truth.derived.get(self.headline), shown.derived.get(self.headline)
        if t_head is not None:
            self.headline_pairs.append((str(t_head.value), str(p_head.value) if p_head else "none"))
        for i, j in align_findings(truth.findings, shown.findings):
            t, p = truth.findings[i].fields.get("size_mm"), shown.findings[j].fields.get("size_mm")
            if t is not None and p is not None:
                error = abs(float(p.value) - float(t.value))
                self.size_errors.append(error)
                self.size_relative.append(error / max(1.0, float(t.value)))
        if malignant is not None and malignancy_probability is not None:
            self.malignancy.append((malignant, malignancy_probability))

    @property
    def field_accuracy(self) -> float:
        return sum(self.correct.values()) / max(1, sum(self.counted.values()))

    @property
    def headline_accuracy(self) -> float:
        pairs = self.headline_pairs
        return sum(t == p for t, p in pairs) / max(1, len(pairs))

    def summary(self) -> dict:
        labels = [m for m, _ in self.malignancy]
        area = auroc(labels, [p for _, p in self.malignancy])
        return {
            "studies": self.studies,
            "field_accuracy": round(self.field_accuracy, 4),
            "field_macro_f1": round(self.f1.macro_f1(), 4),
            "per_field_accuracy": {
                k: round(self.correct[k] / self.counted[k], 4) for k in sorted(self.counted)
            },
            "per_field_f1": {k: round(v, 4) for k, v in self.f1.f1().items()},
            "headline": self.headline,
            f"{self.headline}_accuracy": round(self.headline_accuracy, 4),
            "size_mae_mm": round(float(np.mean(self.size_errors)), 3) if self.size_errors else None,
            "size_relative_error": round(float(np.mean(self.size_relative)), 4)
            if self.size_relative
            else None,
            "malignancy_auroc": round(area, 4) if area is not None else None,
        }


def suspicious_report(report: Report, template: Template) -> bool:
    """Whether a report calls anything suspicious for malignancy, by the template's own
    `suspicious` values (a finding's category where it has one, else the headline)."""
    spec = template.suspicious_finding_result
    if spec is not None:
        return any(
            (v := f.derived.get(spec.id)) is not None and str(v.value) in spec.suspicious
            for f in report.findings
        )
    head = report.derived.get(template.headline)
    return head is not None and str(head.value) in template.derived(template.headline).suspicious
