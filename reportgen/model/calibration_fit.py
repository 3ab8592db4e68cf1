"""Fitting a model's confidence calibration (`reportgen calibrate`): isotonic maps from
raw confidence to the share right, per field where it has enough examples, pooled over
all fields otherwise (`reportgen.report.calibration` applies them)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from reportgen.report.calibration import (
    CALIBRATION_FILE,
    CHECK_BELOW,
    POOLED,
    Calibration,
    Curve,
)

MIN_EXAMPLES = 50  # a field with fewer gets the pooled map


def _isotonic(pairs: list[tuple[float, bool]]) -> Curve:
    from sklearn.isotonic import IsotonicRegression

    raw = np.array([c for c, _ in pairs], float)
    right = np.array([r for _, r in pairs], float)
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, right)
    return Curve(
        tuple(round(float(x), 4) for x in fit.X_thresholds_),
        tuple(round(float(y), 4) for y in fit.y_thresholds_),
    )


def fit_calibration(
    records: list[tuple[str, float, bool]],
    min_examples: int = MIN_EXAMPLES,
    check_below: float = CHECK_BELOW,
) -> Calibration:
    """A calibration from (field, raw confidence, right?) records of held-out drafts."""
    if not records:
        raise ValueError("no confident values to calibrate on")
    by_field: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for key, confidence, right in records:
        by_field[key].append((confidence, right))
    pooled = [(c, r) for _, c, r in records]
    curves = {POOLED: _isotonic(pooled)}
    examples = {POOLED: len(pooled)}
    for key, pairs in sorted(by_field.items()):
        if len(pairs) >= min_examples:
            curves[key] = _isotonic(pairs)
            examples[key] = len(pairs)
    return Calibration(curves, check_below, examples)


def calibrate_model(model_dir: Path, data: Path, out: Path, limit: int = 0) -> dict:
    """Draft the held-out calibration studies under `data` with raw confidences, fit the
    calibration and write it into `model_dir` (`calibration.json`); the evaluation of the
    raw drafts and the fit's summary go to `out`. Returns that summary."""
    from reportgen.model.evaluate import evaluate_model
    from reportgen.report.metrics import calibration_summary

    summary = evaluate_model(
        data, model_dir, out, ["all"], baselines=False, limit=limit, raw_confidence=True
    )
    records = [tuple(r) for r in summary.pop("confidence_records")]
    calibration = fit_calibration(records)  # type: ignore[arg-type]
    (Path(model_dir) / CALIBRATION_FILE).write_text(calibration.to_json() + "\n")
    fitted = [(k, calibration.confidence(k, c), r) for k, c, r in records]
    result = {
        "model": str(model_dir),
        "data": str(data),
        "values": len(records),
        "fields_with_own_curve": sorted(k for k in calibration.curves if k != POOLED),
        "check_below": calibration.check_below,
        # on the calibration studies themselves: how far from calibrated the raw
        # confidences were (the held-out ECE is `reportgen evaluate`'s)
        "raw_on_calibration_studies": calibration_summary(records),  # type: ignore[arg-type]
        "fitted_on_calibration_studies": calibration_summary(fitted),
    }
    (out / "calibration_fit.json").write_text(json.dumps(result, indent=2))
    return result
