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
from reportgen.report.schema import Finding, Report
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
        # field -> true answer -> [read right, stated]: a rare answer's recall (a criterion
        # present in 5% of studies and never read scores 0.95 accuracy, 0.5 balanced)
        self.by_answer: dict[str, dict[str, list[int]]] = defaultdict(dict)
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
            if s.truth is not None:
                tally = self.by_answer[s.field].setdefault(str(s.truth), [0, 0])
                tally[0] += int(s.truth == s.predicted)
                tally[1] += 1
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
            "per_field_balanced_accuracy": {
                k: round(float(np.mean([hit / n for hit, n in tallies.values()])), 4)
                for k, tallies in sorted(self.by_answer.items())
                if k != "size_mm"
            },
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


# -- lesion level: is each lesion found where it is, and described right? -------------------
MATCH_MM = 20.0  # a finding finds a lesion when its box centre lies this close to it
MIN_REPORTABLE_MM = 5.0  # recall targets count lesions at least this large
SIZE_BINS_MM = ((0, 5), (5, 10), (10, 20), (20, 1000))


@dataclass(frozen=True)
class TruthLesion:
    """One lesion of the truth: where it is (world mm) and its finding in the truth report."""

    centre_mm: tuple[float, float, float]
    finding: Finding
    # its label's box (world mm: low corner, high corner): what a drafted box is scored
    # against, one per lesion however many parts its label has on the grid
    box_mm: tuple[np.ndarray, np.ndarray] | None = None


def _box_centre(finding: Finding) -> np.ndarray | None:
    box = finding.evidence.box if finding.evidence is not None else None
    if box is None:
        return None
    return (np.asarray(box.min_mm) + np.asarray(box.max_mm)) / 2


def match_lesions(findings: list[Finding], lesions: list[TruthLesion]) -> list[tuple[int, int]]:
    """(lesion, finding) pairs, nearest first, each used once, box centre within MATCH_MM."""
    pairs = []
    for j, finding in enumerate(findings):
        centre = _box_centre(finding)
        if centre is None:
            continue
        for i, lesion in enumerate(lesions):
            distance = float(np.linalg.norm(centre - np.asarray(lesion.centre_mm)))
            if distance <= MATCH_MM:
                pairs.append((distance, i, j))
    used_i, used_j, matched = set(), set(), []
    for _, i, j in sorted(pairs):
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            matched.append((i, j))
    return matched


@dataclass
class StudyLesions:
    """One study's lesion-level record (what the bootstrap resamples)."""

    lesions: list[tuple[str, float, bool]]  # (type, size mm, found)
    findings: int  # findings the draft wrote
    matched_findings: int
    field_pairs: list[tuple[str, bool]]  # per field of matched pairs: (field, equal?)
    size_errors: list[float]
    laterality: list[bool]
    clock: list[bool]
    # (field, the draft's confidence, right?) per described field of a found lesion: what
    # calibration is measured (and fit) on
    confidences: list[tuple[str, float, bool]] = field(default_factory=list)
    # for error analysis: per truth lesion what the draft wrote of it, then the findings
    # no lesion matched
    described: list[dict] = field(default_factory=list)


GEOMETRY_FIELDS = ("laterality", "clock", "size_mm", "depth")


def _size_bin(size: float) -> str:
    low, high = next(b for b in SIZE_BINS_MM if b[0] <= size < b[1])
    return f"{low}-{high}mm" if high < 1000 else f">={low}mm"


class LesionScores:
    """Lesion-level detection and description: recall (by type and size), precision, and
    on found lesions size error, field accuracy, side and clock face."""

    def __init__(self) -> None:
        self.studies: list[StudyLesions] = []

    def add(self, draft: Report | None, lesions: list[TruthLesion]) -> None:
        findings = draft.findings if draft is not None else []  # None: wrote nothing
        matched = match_lesions(findings, lesions)
        found = {i for i, _ in matched}
        record = StudyLesions(
            lesions=[
                (
                    str(_field(les.finding, "type")),
                    float(_field(les.finding, "size_mm") or 0.0),
                    i in found,
                )
                for i, les in enumerate(lesions)
            ],
            findings=len(findings),
            matched_findings=len(matched),
            field_pairs=[],
            size_errors=[],
            laterality=[],
            clock=[],
        )
        for i, j in matched:
            truth, predicted = lesions[i].finding, findings[j]
            record.described.append(
                {
                    "lesion": i,
                    "type": _field(truth, "type"),
                    "size_mm": _field(truth, "size_mm"),
                    "drafted_size_mm": _field(predicted, "size_mm"),
                    "wrong": sorted(
                        key
                        for key in set(truth.fields) | set(predicted.fields)
                        if _field(truth, key) != _field(predicted, key)
                    ),
                }
            )
            for key in set(truth.fields) | set(predicted.fields):
                record.field_pairs.append((key, _field(truth, key) == _field(predicted, key)))
            t_size, p_size = _field(truth, "size_mm"), _field(predicted, "size_mm")
            if t_size is not None and p_size is not None:
                record.size_errors.append(abs(float(p_size) - float(t_size)))
            for key, out in (("laterality", record.laterality), ("clock", record.clock)):
                if _field(truth, key) is not None:
                    out.append(_field(truth, key) == _field(predicted, key))
            for key, value in predicted.fields.items():
                if value.confidence is not None:
                    right = _field(truth, key) == value.value
                    record.confidences.append((key, float(value.confidence), right))
        record.described += [
            {
                "lesion": i,
                "type": _field(les.finding, "type"),
                "size_mm": _field(les.finding, "size_mm"),
                "missed": True,
            }
            for i, les in enumerate(lesions)
            if i not in found
        ]
        used = {j for _, j in matched}
        record.described += [
            {"false": True, "type": _field(f, "type"), "drafted_size_mm": _field(f, "size_mm")}
            for j, f in enumerate(findings)
            if j not in used
        ]
        self.studies.append(record)

    def summary(self, studies: list[StudyLesions] | None = None) -> dict:
        rows = self.studies if studies is None else studies
        lesions = [les for r in rows for les in r.lesions]
        reportable = [found for _, size, found in lesions if size >= MIN_REPORTABLE_MM]
        findings = sum(r.findings for r in rows)
        flat = lambda name: [v for r in rows for v in getattr(r, name)]  # noqa: E731
        by_type, by_size, by_field = defaultdict(list), defaultdict(list), defaultdict(list)
        for key, right in flat("field_pairs"):
            by_field[key].append(right)
        for kind, size, found in lesions:
            by_type[kind].append(found)
            by_size[_size_bin(size)].append(found)
        return {
            "lesions": len(lesions),
            "lesion_recall": _mean([found for *_, found in lesions]),
            "lesion_recall_reportable": _mean(reportable),
            "lesion_precision": sum(r.matched_findings for r in rows) / findings
            if findings
            else None,
            "size_mae_found_mm": _mean(flat("size_errors")),
            "field_accuracy_found": _mean([right for _, right in flat("field_pairs")]),
            "field_accuracy_found_by_field": {
                k: round(float(np.mean(v)), 4) for k, v in sorted(by_field.items())
            },
            "laterality_found": _mean(flat("laterality")),
            "clock_found": _mean(flat("clock")),
            "recall_by_type": {k: _count(v) for k, v in sorted(by_type.items())},
            "recall_by_size": {k: _count(v) for k, v in sorted(by_size.items())},
            "calibration": calibration_summary(flat("confidences")),
            # the lexicon's descriptors alone (where and how large are measured, not read)
            "calibration_descriptors": calibration_summary(
                [r for r in flat("confidences") if r[0] not in GEOMETRY_FIELDS]
            ),
        }


def _field(finding: Finding, key: str):
    value = finding.fields.get(key)
    return value.value if value is not None else None


def _mean(values: list) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def _count(found: list[bool]) -> str:
    return f"{sum(found)}/{len(found)}"


def calibration_error(pairs: list[tuple[float, bool]], bins: int = 10) -> dict | None:
    """Expected calibration error: over equal-width confidence bins, the gap between the
    mean confidence and the share right, weighted by the bin's share of values; with the
    reliability curve it is computed from (bins holding values only)."""
    if not pairs:
        return None
    confidence = np.array([c for c, _ in pairs], float)
    right = np.array([r for _, r in pairs], float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    curve, gap = [], 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            mean_c, share = float(confidence[inside].mean()), float(right[inside].mean())
            gap += inside.mean() * abs(mean_c - share)
            curve.append(
                {"confidence": round(mean_c, 4), "right": round(share, 4), "n": int(inside.sum())}
            )
    return {"ece": round(float(gap), 4), "values": len(pairs), "reliability": curve}


def calibration_summary(records: list[tuple[str, float, bool]]) -> dict | None:
    """ECE and reliability over every (field, confidence, right) record, and ECE per field."""
    overall = calibration_error([(c, r) for _, c, r in records])
    if overall is None:
        return None
    by_field: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for key, c, r in records:
        by_field[key].append((c, r))
    overall["ece_by_field"] = {
        k: calibration_error(v)["ece"]  # type: ignore[index]
        for k, v in sorted(by_field.items())
    }
    return overall


def bootstrap_interval(
    records: list, statistic, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic(records)` resampling whole studies."""
    if not records:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        sample = [records[k] for k in rng.integers(len(records), size=len(records))]
        value = statistic(sample)
        if value is not None:
            values.append(value)
    if not values:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def paired_difference(
    a: dict[str, bool | None], b: dict[str, bool | None], resamples: int = 2000, seed: int = 0
) -> dict:
    """Accuracy of `a` minus that of `b` (per-study right/wrong, e.g. `headline_by_study`)
    on the studies both scored, with a 95% bootstrap interval that resamples studies once
    for both systems (paired: the studies' own difficulty cancels out)."""
    pairs = [(a[k], b[k]) for k in sorted(a) if k in b and a[k] is not None and b[k] is not None]
    if not pairs:
        return {"studies": 0, "difference": None, "interval_95": None}

    def difference(sample: list[tuple[bool, bool]]) -> float:
        return float(np.mean([x for x, _ in sample]) - np.mean([y for _, y in sample]))

    return {
        "studies": len(pairs),
        "difference": round(difference(pairs), 4),
        "interval_95": bootstrap_interval(pairs, difference, resamples=resamples, seed=seed),
    }
