"""The pancreas CT reader on held-out phantoms: the issue's targets, with 95% intervals.

Phantoms of seeds no model was fit or tuned on are drafted by a pancreas reader (the
bundled one by default) and scored against their truth:
- pancreas: box IoU of the outlined organ (parenchyma, lesions and duct) against the
  painted one's, and the Dice of the outlines (truth resampled to the reader's fine grid);
- tumour: for each painted lesion, the box IoU of the best-overlapping outlined lesion
  (0 when none), and the Dice of the lesion outlines over studies with a lesion;
- classification: the study's primary lesion (ductal adenocarcinoma, cystic lesion or
  none) against the draft's first finding;
- the report: NCCN resectability, each vessel's contact category (a missed or invented
  finding's fields count as wrong), field accuracy, size MAE, valid drafts.
Intervals: percentile bootstrap over studies (1,000 resamples).

    python bench/pancreas_reader.py [--studies 200] [--seed 40600] [--shift scanner]
        [--model reportgen/demo_model/pancreas_ct] [--workers 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from bench_io import scratch_dir, write_result

from reportgen.data import read_manifest
from reportgen.data.truth import lesion_labels
from reportgen.io import load_study
from reportgen.model.evaluate import box_iou, dice
from reportgen.model.explain import region_box_mm
from reportgen.model.generators import bundled_model, open_generator
from reportgen.model.pancreas_reader import read_outlines
from reportgen.parallel import parallel_map
from reportgen.preprocessing import prepare_ct
from reportgen.report import load_template
from reportgen.report.io import read_report
from reportgen.report.metrics import ReportScores, bootstrap_interval
from reportgen.synth import SynthOptions, synth_dataset

CONTACTS = ("sma_contact", "celiac_contact", "cha_contact", "smv_contact", "pv_contact")
ORGAN = ("pancreas", "pancreatic_duct")  # with the lesions: the organ's extent
_GENERATORS: dict[str, object] = {}


def _truth_class(truth: dict) -> str:
    kinds = [les["subtype"] for les in truth.get("lesions", [])]
    return kinds[0] if kinds else "none"


def _draft_class(report) -> str:
    if not report.findings:
        return "none"
    kind = report.findings[0].fields["type"].value
    return "ductal_adenocarcinoma" if kind == "pancreatic_solid_mass" else "cystic_lesion"


def read_one(job: tuple[str, str, dict]) -> dict:
    """Draft one study and score what only outlines show (boxes, Dice)."""
    model, folder, row = job
    torch.set_num_threads(1)
    if model not in _GENERATORS:
        _GENERATORS[model] = open_generator(Path(model))
    generator = _GENERATORS[model]
    study = load_study(Path(folder) / row["dir"])
    outlines = read_outlines(generator.model, study)
    draft = generator.draft_outlines(study, outlines)
    affine = outlines.fine_affine
    shape = np.asarray(generator.model.cfg.fine_shape)
    centre = affine[:3, :3] @ ((shape - 1) / 2.0) + affine[:3, 3]
    truth_mask = prepare_ct(study, generator.model.cfg.fine_grid, centre_mm=centre).mask
    truth = row["truth"]
    labels = truth["anatomy_labels"]
    lesion_sets = [lesion_labels(les) for les in truth.get("lesions", [])]
    all_lesions = [label for labels_ in lesion_sets for label in labels_]
    true_organ = np.isin(truth_mask, [labels[n] for n in ORGAN] + all_lesions)
    drawn = outlines.fine
    drawn_organ = drawn["pancreas"] | drawn["pancreatic_duct"] | drawn["tumour"] | drawn["cyst"]
    record: dict = {"id": row["id"], "class": _truth_class(truth)}
    record["predicted_class"] = _draft_class(draft.report)
    if true_organ.any() and drawn_organ.any():
        record["pancreas_iou"] = box_iou(
            region_box_mm(true_organ, affine), region_box_mm(drawn_organ, affine)
        )
    else:
        record["pancreas_iou"] = 0.0
    record["pancreas_dice"] = dice(true_organ, drawn_organ)
    drawn_lesion = drawn["tumour"] | drawn["cyst"]
    boxes = [region_box_mm(r, affine) for r in draft.outlines if r is not None and r.any()]
    record["lesion_iou"] = []
    for labels_ in lesion_sets:
        painted = np.isin(truth_mask, labels_)
        box = region_box_mm(painted, affine) if painted.any() else None
        record["lesion_iou"].append(
            max((box_iou(box, b) for b in boxes), default=0.0) if box is not None else 0.0
        )
    if lesion_sets:
        record["lesion_dice"] = dice(np.isin(truth_mask, all_lesions), drawn_lesion)
    record["report"] = draft.report.model_dump_json()
    return record


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--seed", type=int, default=40600)
    parser.add_argument("--shift", default=None)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/pancreas_reader.json"))
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="phantoms of this seed (and shift) already written here: read them, or write "
        "them here first (two readers compared on the same studies)",
    )
    args = parser.parse_args()
    model = args.model or bundled_model("pancreas_ct")
    folder = args.data or scratch_dir("reportgen-pancreas-reader-") / "studies"
    if not (folder / "manifest.jsonl").is_file():
        synth_dataset(
            folder,
            args.studies,
            SynthOptions("pancreas", seed=args.seed, shift=args.shift),
            workers=args.workers,
        )
    rows = read_manifest(folder / "manifest.jsonl")[: args.studies]
    t0 = time.time()
    jobs = [(str(model), str(folder), row) for row in rows]
    records = list(parallel_map(read_one, jobs, args.workers))
    seconds = time.time() - t0
    from reportgen.report.schema import Report

    template = load_template("pancreas_ct")
    pooled = ReportScores(template)
    per_study = []
    for record, row in zip(records, rows, strict=True):
        draft = Report.model_validate_json(record.pop("report"))
        truth = read_report(folder / row["dir"] / "report.json")
        one = ReportScores(template)
        one.add(draft, truth)
        pooled.add(draft, truth)
        summary = one.summary()
        record["valid"] = bool(draft.validation.valid)
        record["correct"] = sum(one.correct.values())
        record["counted"] = sum(one.counted.values())
        record["resectability"] = summary["resectability_accuracy"]
        record["contacts"] = {
            k: (one.correct[k], one.counted[k]) for k in CONTACTS if one.counted.get(k)
        }
        record["sizes"] = one.size_errors
        record["wrong"] = sorted(k for k in one.counted if one.correct.get(k, 0) < one.counted[k])
        per_study.append(record)

    def ratio(field: str):
        return lambda rs: (
            sum(r["contacts"][field][0] for r in rs if field in r["contacts"])
            / max(1, sum(r["contacts"][field][1] for r in rs if field in r["contacts"]))
        )

    statistics = {
        "pancreas_box_iou": lambda rs: float(np.mean([r["pancreas_iou"] for r in rs])),
        "pancreas_dice": lambda rs: float(np.mean([r["pancreas_dice"] for r in rs])),
        "tumour_box_iou": lambda rs: _mean([v for r in rs for v in r["lesion_iou"]]),
        "tumour_dice": lambda rs: _mean([r["lesion_dice"] for r in rs if "lesion_dice" in r]),
        "classification_accuracy": lambda rs: float(
            np.mean([r["class"] == r["predicted_class"] for r in rs])
        ),
        "resectability_accuracy": lambda rs: float(np.mean([r["resectability"] for r in rs])),
        "field_accuracy": lambda rs: (
            sum(r["correct"] for r in rs) / max(1, sum(r["counted"] for r in rs))
        ),
        "size_mae_mm": lambda rs: _mean([e for r in rs for e in r["sizes"]]),
        "valid": lambda rs: float(np.mean([r["valid"] for r in rs])),
        **{f"{k}_accuracy": ratio(k) for k in CONTACTS},
    }
    result: dict = {
        "command": "python bench/pancreas_reader.py "
        + f"--studies {args.studies} --seed {args.seed}"
        + (f" --shift {args.shift}" if args.shift else ""),
        "model": str(model),
        "studies": len(per_study),
        "seconds_reading": round(seconds, 1),
        "classes": {c: sum(r["class"] == c for r in per_study) for c in
                    ("ductal_adenocarcinoma", "cystic_lesion", "none")},
    }  # fmt: skip
    for name, statistic in statistics.items():
        value = statistic(per_study)
        result[name] = {
            "value": round(value, 4) if value is not None else None,
            "ci95": bootstrap_interval(per_study, statistic),
        }
    pooled_summary = pooled.summary()
    result["per_field_accuracy"] = pooled_summary["per_field_accuracy"]
    result["per_field_balanced_accuracy"] = pooled_summary["per_field_balanced_accuracy"]
    keys = ("id", "class", "predicted_class", "resectability", "pancreas_iou", "lesion_iou")
    result["per_study"] = [
        {**{k: r[k] for k in keys}, "size_errors_mm": r["sizes"], "wrong": r["wrong"]}
        for r in per_study
    ]
    write_result(args.out, result)


if __name__ == "__main__":
    main()
