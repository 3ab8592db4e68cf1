"""Comparing two reports: finding alignment, field-level agreement and diffs.

One module serves the metrics (`reportgen.report.metrics`), the review app's correction
records and the rewards: they all ask which fields of report B differ from report A.
Findings are aligned by the Hungarian algorithm on a location/type mismatch cost, so
order does not matter; findings on different sides are never matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from reportgen.report.schema import Finding, Report, Scalar

NO_MATCH = 1e6


def clock_hours(a: str, b: str) -> int:
    """Hours apart on the clock face (0-6), shared by finding alignment and the rewards."""
    ha, hb = int(a.split("_")[1]), int(b.split("_")[1])
    return min((ha - hb) % 12, (hb - ha) % 12)


def _cost(a: Finding, b: Finding) -> float:
    fa = {k: v.value for k, v in a.fields.items()}
    fb = {k: v.value for k, v in b.fields.items()}
    if "laterality" in fa and "laterality" in fb and fa["laterality"] != fb["laterality"]:
        return NO_MATCH
    cost = 0.0
    if "type" in fa and "type" in fb and fa["type"] != fb["type"]:
        cost += 2.0
    if "clock" in fa and "clock" in fb:
        cost += 0.5 * clock_hours(str(fa["clock"]), str(fb["clock"]))
    if "size_mm" in fa and "size_mm" in fb:
        sa, sb = float(fa["size_mm"]), float(fb["size_mm"])
        cost += abs(sa - sb) / max(sa, sb, 1.0)
    cost += 0.25 * sum(
        1
        for k in fa.keys() & fb.keys()
        if k not in ("laterality", "clock", "size_mm", "type") and fa[k] != fb[k]
    )
    return cost


def align_findings(a: list[Finding], b: list[Finding]) -> list[tuple[int, int]]:
    """Pairs (i, j) of findings that describe the same lesion."""
    if not a or not b:
        return []
    cost = np.array([[_cost(x, y) for y in b] for x in a])
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if cost[i, j] < NO_MATCH]


@dataclass(frozen=True)
class Slot:
    """One field of one report compared with the same field of another."""

    field: str  # field id ("margin"), or "derived.assessment"
    where: str  # "fields.x", "findings[F1].x", "derived.x"
    truth: Scalar | None
    predicted: Scalar | None


def slots(predicted: Report, truth: Report, bool_default: bool = True) -> list[Slot]:
    """Every field of both reports, aligned; a missing boolean counts as false."""

    def values(vals: dict) -> dict:
        return {k: v.value for k, v in vals.items()}

    def pair(prefix: str, names: set[str], t: dict, p: dict, label=lambda k: k) -> list[Slot]:
        out = []
        for name in sorted(names):
            tv, pv = t.get(name), p.get(name)
            if bool_default:
                if tv is None and isinstance(pv, bool):
                    tv = False
                if pv is None and isinstance(tv, bool):
                    pv = False
            out.append(Slot(label(name), f"{prefix}{name}", tv, pv))
        return out

    tf, pf = values(truth.fields), values(predicted.fields)
    result = pair("fields.", set(tf) | set(pf), tf, pf)
    td, pd = values(truth.derived), values(predicted.derived)
    result += pair("derived.", set(td) | set(pd), td, pd, label=lambda k: f"derived.{k}")
    pairs = align_findings(truth.findings, predicted.findings)
    matched_t = {i for i, _ in pairs}
    matched_p = {j for _, j in pairs}
    for i, j in pairs:
        t, p = values(truth.findings[i].fields), values(predicted.findings[j].fields)
        result += pair(f"findings[{truth.findings[i].id}].", set(t) | set(p), t, p)
    for i, finding in enumerate(truth.findings):
        if i not in matched_t:
            result += [
                Slot(k, f"findings[{finding.id}].{k}", v.value, None)
                for k, v in finding.fields.items()
            ]
    for j, finding in enumerate(predicted.findings):
        if j not in matched_p:
            result += [
                Slot(k, f"findings[+{finding.id}].{k}", None, v.value)
                for k, v in finding.fields.items()
            ]
    return result


@dataclass
class FieldChange:
    where: str
    field: str
    before: Scalar | None
    after: Scalar | None


@dataclass
class ReportDiff:
    changes: list[FieldChange]
    added_findings: list[str]
    removed_findings: list[str]

    @property
    def empty(self) -> bool:
        return not (self.changes or self.added_findings or self.removed_findings)

    def to_dict(self) -> dict:
        return {
            "changes": [c.__dict__ for c in self.changes],
            "added_findings": self.added_findings,
            "removed_findings": self.removed_findings,
        }


def diff_reports(before: Report, after: Report) -> ReportDiff:
    """What a correction changed: fields (with old and new values), added and removed findings."""
    items = slots(after, before, bool_default=False)
    changes = [
        FieldChange(s.where, s.field, s.truth, s.predicted)
        for s in items
        if s.truth != s.predicted and not s.where.startswith("findings[+")
    ]
    pairs = align_findings(before.findings, after.findings)
    removed = [f.id for i, f in enumerate(before.findings) if i not in {i for i, _ in pairs}]
    added = [f.id for j, f in enumerate(after.findings) if j not in {j for _, j in pairs}]
    changes = [
        c for c in changes if not any(c.where.startswith(f"findings[{r}].") for r in removed)
    ]
    return ReportDiff(changes, added, removed)
