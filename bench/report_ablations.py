"""Benchmark table: report-model ablations, one row per (evaluation, system).

Each row names a `reportgen evaluate` output and the system in it to quote, so
ablations trained and evaluated separately (with/without lesion-centred reading, another
detector, no constraints, missing sequences) land in one table on the same held-out set.

python bench/report_ablations.py \
    --row "lesion-centred=EVAL_DIR/evaluation.json:model[all]" \
    --row "whole study only=OLD_EVAL/evaluation.json:model[all]" \
    [--out bench/results/report_ablations.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = (
    ("field_accuracy", "field acc"),
    ("headline_accuracy", "headline acc"),  # the template's headline (BI-RADS: assessment)
    ("size_mae_mm", "size MAE mm"),
    ("malignancy_auroc", "AUROC"),
    ("detection_iou", "IoU"),
    ("template_compliance", "valid"),
)


def parse_row(text: str) -> tuple[str, Path, str]:
    name, _, rest = text.partition("=")
    path, _, system = rest.partition(".json:")
    path += ".json"
    if not name or not path or not system:
        raise SystemExit(f"--row wants NAME=EVALUATION.json:SYSTEM, not {text!r}")
    return name, Path(path), system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--row", action="append", required=True)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "report_ablations.json"
    )
    args = parser.parse_args()
    rows = []
    for name, path, system in map(parse_row, args.row):
        evaluation = json.loads(path.read_text())
        if system not in evaluation["results"]:
            raise SystemExit(f"{path} has no system {system!r}")
        metrics = dict(evaluation["results"][system])
        metrics["headline_accuracy"] = metrics.get(f"{evaluation['headline']}_accuracy")
        rows.append(
            {
                "ablation": name,
                "evaluation": str(path),
                "system": system,
                "data": evaluation["data"],
                "studies": metrics["studies"],
                **{key: metrics.get(key) for key, _ in COLUMNS},
            }
        )
    lines = [
        "| ablation | n | " + " | ".join(label for _, label in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        cells = ["-" if row[k] is None else f"{row[k]:.3f}" for k, _ in COLUMNS]
        lines.append(f"| {row['ablation']} | {row['studies']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"benchmark": "report_ablations", "rows": rows}, indent=2) + "\n"
    )
    print(table)


if __name__ == "__main__":
    main()
