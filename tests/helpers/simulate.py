"""Simulated clinicians for the refinement benches: they correct drafts from the phantom's truth.

Real clinicians differ: some fix everything, some only what changes management, and some
miss errors and now and then disagree with what is true. Each profile decides which
wrong fields get fixed, with some noise (a wrong value left in, a right one changed).
Their edits go through the review app's own code (`report_from_form`, `RewardLog.sign`),
so the benches exercise the same path a clinician's browser does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from reportgen.report import Report, load_template
from reportgen.report.compare import align_findings
from reportgen.report.io import read_report
from reportgen.review.forms import form_values, report_from_form
from reportgen.review.store import RewardLog

SIMULATED_PASSWORD = "simulated-clinician"  # accounts of the bench, never of people
MAJOR_FIELDS = {"type", "laterality", "margin", "shape", "kinetics_delayed", "internal_enhancement"}


@dataclass(frozen=True)
class ClinicianProfile:
    name: str
    major_only: bool = False  # fixes a major field, or any field when the headline is wrong
    miss_rate: float = 0.0  # chance a wrong field is left wrong
    size_tolerance_mm: float = 0.0  # size errors within this are left alone
    disagree_rate: float = 0.0  # chance a categorical field is set to another value than truth


PROFILES = (
    ClinicianProfile("thorough", miss_rate=0.05),
    ClinicianProfile("busy", major_only=True, miss_rate=0.1, size_tolerance_mm=5.0),
    ClinicianProfile("careful", miss_rate=0.0, size_tolerance_mm=1.0),
    ClinicianProfile("inattentive", miss_rate=0.2, size_tolerance_mm=3.0, disagree_rate=0.03),
)


def _other_value(template, field: str, value, rng: random.Random):
    """A categorical field's value other than `value` (None: not categorical)."""
    try:
        spec = template.field(field)
    except (KeyError, ValueError):
        return None
    if spec.type == "bool":
        return not bool(value)
    others = [v for v in getattr(spec, "values", None) or [] if v != value]
    return rng.choice(others) if spec.type == "enum" and others else None


def corrected_form(
    draft: Report, truth: Report, profile: ClinicianProfile, rng: random.Random
) -> dict:
    """The form a clinician of this profile would sign for `draft` of a study with `truth`."""
    d, t = form_values(draft), form_values(truth)
    template = load_template(draft.template.id)
    headline = template.headline

    def stated(report: Report):
        value = report.derived.get(headline)
        return value.value if value is not None else None

    wrong_headline = stated(draft) != stated(truth)

    def fixes(field: str, before, after) -> bool:
        if before == after:
            return False
        major = field in MAJOR_FIELDS or field == "size_mm" or wrong_headline
        if profile.major_only and not major:
            return False
        if (
            field == "size_mm"
            and before is not None
            and after is not None
            and abs(float(before) - float(after)) <= profile.size_tolerance_mm
        ):
            return False
        return rng.random() >= profile.miss_rate

    def disagree(values: dict) -> None:
        for key in sorted(values):
            if profile.disagree_rate and rng.random() < profile.disagree_rate:
                other = _other_value(template, key, values[key], rng)
                if other is not None:
                    values[key] = other

    fields = dict(d["fields"])
    if not profile.major_only or wrong_headline:
        for key in sorted(set(t["fields"]) | set(d["fields"])):
            if fixes(key, d["fields"].get(key), t["fields"].get(key)):
                if key in t["fields"]:
                    fields[key] = t["fields"][key]
                else:
                    fields.pop(key, None)
    disagree(fields)
    findings = []
    pairs = dict(align_findings(truth.findings, draft.findings))
    for i, truth_finding in enumerate(t["findings"]):
        if i not in pairs:
            findings.append(dict(truth_finding))  # a missed finding is always added
            continue
        merged = dict(d["findings"][pairs[i]])
        for key in sorted(set(truth_finding) | set(merged)):
            if fixes(key, merged.get(key), truth_finding.get(key)):
                if key in truth_finding:
                    merged[key] = truth_finding[key]
                else:
                    merged.pop(key, None)
        disagree(merged)
        findings.append(merged)
    return {"fields": fields, "findings": findings, "comment": d["comment"]}


def sign_as(
    log: RewardLog,
    clinician_id: int,
    draft_id: int,
    draft: Report,
    truth: Report,
    profile: ClinicianProfile,
    rng: random.Random,
) -> Report:
    """Correct and sign through the app's own code; falls back to the truth if the mix is invalid."""
    template = load_template(draft.template.id)
    log.open(draft_id, clinician_id)
    report, _ = report_from_form(
        template, draft, corrected_form(draft, truth, profile, rng), clinician_id
    )
    if not report.validation.valid:  # a half-fixed finding can break a conditional rule
        report, _ = report_from_form(template, draft, form_values(truth), clinician_id)
    log.sign(draft_id, clinician_id, 0, report)
    return report


def correct_drafts_of(log: RewardLog, studies: Path, generator, rng: random.Random) -> int:
    """Draft every study of a synthetic folder with `generator` and have the simulated
    clinicians (in turn) correct and sign each draft in `log`; returns how many."""
    from reportgen.data import read_manifest
    from reportgen.io import load_study
    from reportgen.model.generate import GenerateOptions

    clinicians = [log.accounts.add(p.name, p.name, SIMULATED_PASSWORD) for p in PROFILES]
    rows = read_manifest(studies / "manifest.jsonl")
    for i, row in enumerate(rows):
        folder = studies / row["dir"]
        draft = generator.draft(load_study(folder), GenerateOptions(explain=False)).report
        truth = read_report(folder / "report.json")
        draft_id, _ = log.add_draft(draft, study_path=row["dir"])
        profile = PROFILES[i % len(PROFILES)]
        sign_as(log, clinicians[i % len(PROFILES)], draft_id, draft, truth, profile, rng)
    return len(rows)
