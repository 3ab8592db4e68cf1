"""The pancreas CT reading with perfect outlines: how far measurement and rules carry.

Each phantom's own label map (organs, vessels, ducts, lesions, deposits), resampled onto
the reader's 2 mm grid as a reader's outline would be, is measured
(`reportgen.measure.pancreas`) and read into template values
(`reportgen.model.pancreas_reading`); the report the template's rules build from them is
scored against the truth. What this misses, a learned outline cannot win back: it is
the ceiling of the measurement layer, and says which fields need more than geometry.

    python bench/pancreas_oracle.py [--studies 60] [--seed 40400] [--shift scanner]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_io import scratch_dir, write_result

from reportgen.data import read_manifest
from reportgen.data.truth import named_outlines
from reportgen.io import load_study
from reportgen.measure.pancreas import measure_pancreas_study
from reportgen.model.pancreas_reader import FINE_LESIONS
from reportgen.model.pancreas_reading import read_pancreas
from reportgen.preprocessing import CT_CHANNELS, CT_WINDOW_HU, prepare_ct
from reportgen.report import build_report, load_template
from reportgen.report.io import read_report
from reportgen.report.metrics import ReportScores
from reportgen.report.schema import Provenance, StudyRef
from reportgen.synth import SynthOptions, synth_dataset


def outlines_of(mask: np.ndarray, row: dict) -> dict[str, np.ndarray]:
    """Name -> boolean outline, from a phantom's label map and its sidecar."""
    return named_outlines(mask, row["truth"], FINE_LESIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=60)
    parser.add_argument("--seed", type=int, default=40400)
    parser.add_argument("--shift", default=None)
    parser.add_argument(
        "--grid",
        choices=("2mm", "native"),
        default="2mm",
        help="measure on the reader's 2 mm grid or on the acquisition's own grid",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/pancreas_oracle.json"))
    args = parser.parse_args()
    folder = scratch_dir("reportgen-pancreas-oracle-") / "studies"
    synth_dataset(
        folder, args.studies, SynthOptions("pancreas", seed=args.seed, shift=args.shift), workers=2
    )
    template = load_template("pancreas_ct")
    scores = ReportScores(template)
    t0 = time.time()
    for row in read_manifest(folder / "manifest.jsonl"):
        study = load_study(folder / row["dir"])
        if args.grid == "native":
            mask, affine = study.lesion_mask.data, study.lesion_mask.affine
            hu = {name: study.sequences[name].data for name in CT_CHANNELS}
        else:
            ready = prepare_ct(study)
            low, high = CT_WINDOW_HU
            mask, affine = ready.mask, ready.affine
            hu = {
                name: ready.image[k] * (high - low) + low
                for k, name in enumerate(CT_CHANNELS)
                if ready.present[k]
            }
        measures = measure_pancreas_study(outlines_of(mask, row), hu, affine)
        fields, findings = read_pancreas(measures)
        draft = build_report(
            template,
            fields,
            findings,
            study=StudyRef(study_id=row["id"], sequences_used=list(study.sequences)),
            provenance=Provenance(source="model", model_name="oracle outlines"),
        )
        scores.add(draft, read_report(folder / row["dir"] / "report.json"))
    summary = scores.summary()
    result = {
        "command": "python bench/pancreas_oracle.py "
        + f"--studies {args.studies} --seed {args.seed}"
        + (f" --shift {args.shift}" if args.shift else "")
        + (f" --grid {args.grid}" if args.grid != "2mm" else ""),
        "outlines": "the phantom's own label map on "
        + ("the acquisition's own grid" if args.grid == "native" else "the reader's 2 mm grid"),
        "seconds": round(time.time() - t0, 1),
        **{
            k: summary[k]
            for k in ("studies", "field_accuracy", "resectability_accuracy", "size_mae_mm")
        },
        "per_field_accuracy": summary["per_field_accuracy"],
        "per_field_balanced_accuracy": summary["per_field_balanced_accuracy"],
    }
    write_result(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
