"""The one definition of the report metrics (`reportgen.report.metrics`)."""

from __future__ import annotations

import numpy as np
from test_templates import BREAST, CERVIX, FIBROADENOMA, SPICULATED, _report

from reportgen.report import load_template
from reportgen.report.metrics import (
    ReportScores,
    auroc,
    field_accuracy,
    scored_slots,
    suspicious_report,
)

BIRADS = load_template("birads_mri")


def test_a_perfect_draft_scores_every_field_it_states():
    truth = _report("birads_mri", BREAST, [SPICULATED])
    correct, counted = field_accuracy(truth, truth)
    assert correct == counted == len(scored_slots(truth, truth)) > len(SPICULATED)


def test_missed_and_invented_findings_both_count_against_the_draft():
    truth = _report("birads_mri", BREAST, [SPICULATED])
    missed = _report("birads_mri", BREAST, [])
    invented = _report("birads_mri", BREAST, [SPICULATED, FIBROADENOMA])
    perfect, total = field_accuracy(truth, truth)
    c_missed, n_missed = field_accuracy(missed, truth)
    c_invented, n_invented = field_accuracy(invented, truth)
    # leaving the finding out loses its fields; writing an extra one adds wrong fields
    assert c_missed < perfect and n_missed == total  # its fields still count, as wrong
    assert c_invented == perfect and n_invented > total
    assert c_invented / n_invented < 1.0


def test_scores_use_the_templates_headline_not_a_name_in_code():
    scores = ReportScores(load_template("figo_cervix_2018"))
    small = _report("figo_cervix_2018", CERVIX, [{"size_mm": 15}])
    large = _report("figo_cervix_2018", CERVIX, [{"size_mm": 45}])
    scores.add(small, small)
    scores.add(small, large)  # IB1 written for a IB3 tumour
    summary = scores.summary()
    assert summary["headline"] == "stage"
    assert summary["stage_accuracy"] == 0.5
    assert summary["size_mae_mm"] == 15.0
    assert "assessment_accuracy" not in summary


def test_a_system_that_writes_nothing_is_scored_not_skipped():
    truth = _report("birads_mri", BREAST, [SPICULATED])
    scores = ReportScores(BIRADS)
    scores.add(None, truth, malignant=1, malignancy_probability=0.2)
    summary = scores.summary()
    assert summary["studies"] == 1 and summary["field_accuracy"] < 0.2
    assert summary["malignancy_auroc"] is None  # one class only


def test_suspicious_values_come_from_the_template():
    assert suspicious_report(_report("birads_mri", BREAST, [SPICULATED]), BIRADS)
    assert not suspicious_report(_report("birads_mri", BREAST, [FIBROADENOMA]), BIRADS)
    assert auroc([0, 1, 1], [0.1, 0.9, 0.8]) == 1.0


# -- lesion level ---------------------------------------------------------------------------


def _finding_at(centre, **fields):
    from reportgen.report.schema import Box, Evidence, Finding, Value

    c = np.asarray(centre, dtype=float)
    return Finding(
        id="F",
        fields={k: Value(value=v) for k, v in fields.items()},
        evidence=Evidence(box=Box(min_mm=tuple(c - 3), max_mm=tuple(c + 3))),
    )


def test_a_lesion_is_found_by_a_finding_boxed_within_20_mm():
    from reportgen.report.metrics import LesionScores, TruthLesion
    from reportgen.report.schema import Report

    truth = [
        TruthLesion(
            (0.0, 0.0, 0.0), _finding_at((0, 0, 0), type="mass", size_mm=12, clock="clock_3")
        ),
        TruthLesion((80.0, 0.0, 0.0), _finding_at((80, 0, 0), type="focus", size_mm=4)),
    ]
    near = _finding_at((10, 5, 0), type="mass", size_mm=15, clock="clock_3")
    far = _finding_at((80, 30, 0), type="focus", size_mm=4)
    draft = Report(
        template={"id": "birads_mri", "version": "1"},
        study={"study_id": "s"},
        provenance={"source": "model"},
        findings=[near, far],
    )
    scores = LesionScores()
    scores.add(draft, truth)
    summary = scores.summary()
    assert summary["lesion_recall"] == 0.5  # the far finding is 30 mm from the focus
    assert summary["lesion_recall_reportable"] == 1.0  # the 4 mm focus is below 5 mm
    assert summary["lesion_precision"] == 0.5
    assert summary["size_mae_found_mm"] == 3.0
    assert summary["clock_found"] == 1.0
    assert summary["recall_by_type"] == {"focus": "0/1", "mass": "1/1"}
    scores.add(None, truth)  # a system that wrote nothing finds nothing
    assert scores.summary()["lesion_recall"] == 0.25


def test_bootstrap_interval_brackets_the_estimate():
    from reportgen.report.metrics import bootstrap_interval

    records = [1.0] * 30 + [0.0] * 10
    low, high = bootstrap_interval(records, lambda s: float(np.mean(s)))
    assert low < 0.75 < high and high - low < 0.35
    assert bootstrap_interval([], np.mean) is None


def test_a_rare_criterion_never_read_shows_in_balanced_accuracy_not_accuracy():
    scores = ReportScores(load_template("figo_cervix_2018"))
    absent = _report("figo_cervix_2018", CERVIX, [{"size_mm": 15}])
    present = _report("figo_cervix_2018", {**CERVIX, "pelvic_nodes": True}, [{"size_mm": 15}])
    for _ in range(19):
        scores.add(absent, absent)
    scores.add(absent, present)  # nodes there, read as absent
    summary = scores.summary()
    assert summary["per_field_accuracy"]["pelvic_nodes"] == 0.95
    assert summary["per_field_balanced_accuracy"]["pelvic_nodes"] == 0.5
    assert summary["per_field_balanced_accuracy"]["bladder_mucosa"] == 1.0


def test_paired_difference_compares_the_same_studies_only():
    from reportgen.report.metrics import paired_difference

    a = {f"s{i}": i % 4 != 0 for i in range(40)}  # right on 30 of 40
    same = paired_difference(a, dict(a))
    assert same["difference"] == 0.0 and same["interval_95"] == (0.0, 0.0)
    worse = {**a, **{f"s{i}": False for i in range(1, 14) if i % 4}}  # 10 of a's right
    result = paired_difference(a, {**worse, "unscored": True, "s0": None})
    assert result["studies"] == 39  # s0 unscored in b; "unscored" absent from a
    assert result["difference"] == round(10 / 39, 4)
    low, high = result["interval_95"]
    assert 0.0 < low < result["difference"] < high


def test_a_truth_lesion_is_one_box_however_many_parts_its_label_has():
    """Box IoU scores each truth lesion's whole label: a lesion in two parts on the grid
    (a spicule cut off, clumps of a non-mass enhancement) is one box, so a drafted box
    that fits the lesion scores 1, not the mean over its parts."""
    from reportgen.model.evaluate import _truth_lesions, box_iou

    mask = np.zeros((20, 20, 20), np.int16)
    mask[2:8, 2:8, 2:8] = 1
    mask[10:12, 2:4, 2:4] = 1  # a part apart from the body
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    truth = _report("birads_mri", BREAST, [SPICULATED])
    (lesion,), (region,) = _truth_lesions(truth, {}, mask, affine)
    assert (region == (mask == 1)).all()  # what its drafted outline's Dice is scored on
    low, high = lesion.box_mm
    assert np.allclose(high - low, [20.0, 12.0, 12.0])  # voxels 2..11 in x, 2..7 in y, z
    assert box_iou(lesion.box_mm, (low.copy(), high.copy())) == 1.0


def test_dice_is_the_overlap_of_two_masks():
    from reportgen.model.evaluate import dice

    a = np.zeros((10, 10, 10), bool)
    b = a.copy()
    a[2:6, 2:6, 2:6] = True  # 64 voxels
    b[4:8, 2:6, 2:6] = True  # 64, half of them shared
    assert dice(a, a) == 1.0 and dice(a, b) == 0.5 and dice(a, ~a) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 0.0
