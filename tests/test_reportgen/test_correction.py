"""The typed correction record that crosses from the review app to learning."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from test_templates import BREAST, FIBROADENOMA, SPICULATED, _report

from reportgen.report.compare import diff_reports
from reportgen.report.correction import CorrectionDiff, CorrectionRecord


def _record() -> CorrectionRecord:
    draft = _report("birads_mri", BREAST, [FIBROADENOMA])
    signed = _report("birads_mri", BREAST, [SPICULATED])
    return CorrectionRecord(
        correction_id=1,
        draft_id=7,
        study_id="case-1",
        template_id="birads_mri",
        clinician="alice",
        time_spent_s=42.0,
        signed_at="2026-12-01T12:00:00+00:00",
        diff=CorrectionDiff.model_validate(diff_reports(draft, signed).to_dict()),
        draft=draft,
        corrected=signed,
    )


def test_a_record_round_trips_through_its_json_line():
    record = _record()
    assert record.diff.changes  # the edit is recorded field by field
    assert CorrectionRecord.from_json_line(record.to_json_line()) == record


def test_unknown_or_missing_keys_are_refused_not_dropped():
    data = json.loads(_record().to_json_line())
    with pytest.raises(ValidationError):
        CorrectionRecord.model_validate({**data, "patient_name": "x"})
    with pytest.raises(ValidationError):
        CorrectionRecord.model_validate({k: v for k, v in data.items() if k != "corrected"})
