"""Calibrated confidence: the metric (ECE and the reliability curve), the isotonic fit,
its application to a report, and the marks every format puts on values to check."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.model.calibration_fit import fit_calibration
from reportgen.render import render_text
from reportgen.render.html import render_html
from reportgen.report import build_report, load_template
from reportgen.report.calibration import POOLED, Calibration, values_to_check
from reportgen.report.metrics import calibration_error, calibration_summary
from reportgen.report.schema import Provenance, StudyRef
from reportgen.review.forms import check_notes


def test_ece_is_the_weighted_gap_between_confidence_and_share_right():
    assert calibration_error([(0.9, True)] * 9 + [(0.9, False)])["ece"] == pytest.approx(0.0)
    assert calibration_error([(0.9, False)] * 10)["ece"] == pytest.approx(0.9)
    mixed = [(0.95, True)] * 10 + [(0.55, True)] * 5 + [(0.55, False)] * 5
    result = calibration_error(mixed)
    assert result["ece"] == pytest.approx((10 * 0.05 + 10 * 0.05) / 20)
    assert [b["n"] for b in result["reliability"]] == [10, 10]
    assert calibration_error([]) is None
    by_field = calibration_summary([("margin", 0.9, False), ("shape", 0.9, True)])
    assert by_field["ece_by_field"] == {"margin": pytest.approx(0.9), "shape": pytest.approx(0.1)}


def test_isotonic_fit_maps_overconfidence_onto_the_share_right():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.5, 1.0, 4000)
    right = rng.random(4000) < (raw - 0.5) * 1.2 + 0.3  # right less often than claimed
    records = [("margin", float(c), bool(r)) for c, r in zip(raw, right, strict=True)]
    records += [("rare", 0.99, False)] * 10  # too few for its own curve
    calibration = fit_calibration(records)
    assert set(calibration.curves) == {POOLED, "margin"}
    fitted = [(calibration.confidence(k, c), r) for k, c, r in records if k == "margin"]
    assert (
        calibration_error(fitted)["ece"]
        < 0.03
        < calibration_error([(c, r) for k, c, r in records if k == "margin"])["ece"]
    )
    assert calibration.confidence("margin", 0.95) == pytest.approx(0.84, abs=0.05)
    again = Calibration.from_json(calibration.to_json())
    assert again.confidence("rare", 0.9) == calibration.confidence("rare", 0.9)
    assert again.examples == calibration.examples


@pytest.fixture
def unsure_draft():
    """A breast draft whose margin the model was unsure of, calibrated with one map."""
    template = load_template("birads_mri")
    report = build_report(
        template,
        {"fgt_amount": "fgt_scattered", "bpe_level": "bpe_minimal"},
        [
            {
                "type": "mass",
                "laterality": "left",
                "shape": "shape_oval",
                "margin": "margin_spiculated",
                "size_mm": 14,
            }
        ],
        study=StudyRef(study_id="s1"),
        provenance=Provenance(source="model", model_name="m"),
        confidences={"fgt_amount": 0.97},
        finding_confidences=[{"margin": 0.62, "shape": 0.99, "type": 0.99}],
    )
    identity = Calibration({POOLED: _identity()})
    return identity.apply(report)


def _identity():
    from reportgen.report.calibration import Curve

    return Curve((0.0, 1.0), (0.0, 1.0))


def test_only_values_below_the_threshold_are_marked_in_text_html_and_form(unsure_draft):
    assert unsure_draft.provenance.check_below == pytest.approx(0.8)
    assert values_to_check(unsure_draft) == ["findings[0].margin"]
    text = render_text(unsure_draft, "en")
    margin_line = next(line for line in text.splitlines() if "spiculated" in line.lower())
    assert "(uncertain, 62%: please verify)" in margin_line
    assert text.count("please verify") == 1
    assert "不确定，62%，请核实" in render_text(unsure_draft, "zh")
    page = render_html(unsure_draft, "en")
    assert page.count('class="check"') == 1 and "uncertain, 62%" in page
    notes = check_notes(unsure_draft, "en", findings_now=1)
    assert notes == {"fields": {}, "findings": [{"margin": "uncertain, 62%: please verify"}]}
    # the reader removed or added a finding: marks by the draft's order would mislead
    assert check_notes(unsure_draft, "en", findings_now=2)["findings"] == []


def test_an_uncalibrated_model_marks_nothing(unsure_draft):
    unsure_draft.provenance.check_below = None
    assert values_to_check(unsure_draft) == []
    assert "please verify" not in render_text(unsure_draft, "en")
