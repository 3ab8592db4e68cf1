"""The pancreas CT reading with perfect outlines: how far measurement and rules carry.

Each phantom's own label map (organs, vessels, ducts, lesions, deposits), resampled onto
a reader's grid as a reader's outline would be, is measured
(`reportgen.measure.pancreas`) and read into template values
(`reportgen.model.pancreas_reading`); the report the template's rules build from them is
scored against the truth. What this misses, a learned outline cannot win back: it is
the ceiling of the measurement layer, and says which fields need more than geometry.

    python bench/pancreas_oracle.py [--studies 60] [--seed 40400] [--shift scanner]
        [--grid 2mm|native|reader]

`--grid reader` is the bundled reader's own cascade with perfect outlines: the coarse
4 mm grid for distant disease and the fine 1 x 1 x 2 mm crop centred on the true
pancreas's box (`pancreas_reader.measure_outlines`), the ceiling the reader trains to.
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
from reportgen.model.pancreas_reader import (
    COARSE_LESIONS,
    FINE_LESIONS,
    PancreasOutlines,
    PancreasReaderConfig,
    box_centre,
    class_lookup,
    hounsfield,
    measure_outlines,
    one_organ,
)
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


def reader_grid_measures(study, row: dict):
    """The phantom's own outlines on the reader's two grids, measured as the reader's are."""
    cfg = PancreasReaderConfig()
    truth = row["truth"]

    def named(prepared, classes, lesions) -> dict[str, np.ndarray]:
        labels = class_lookup(truth, classes, lesions)[prepared.mask]
        return {name: labels == k for k, name in enumerate(classes) if k}

    coarse = prepare_ct(study, cfg.coarse_grid)
    coarse_named = named(coarse, cfg.coarse_classes, COARSE_LESIONS)
    centre = box_centre(coarse_named["pancreas"] | coarse_named["lesion"], coarse.affine)
    fine = prepare_ct(study, cfg.fine_grid, centre_mm=centre)
    outlines = PancreasOutlines(
        fine=one_organ(named(fine, cfg.fine_classes, FINE_LESIONS)),
        fine_affine=fine.affine,
        fine_hu=hounsfield(fine),
        coarse=coarse_named,
        coarse_affine=coarse.affine,
        pancreas_found=True,
    )
    return measure_outlines(outlines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=60)
    parser.add_argument("--seed", type=int, default=40400)
    parser.add_argument("--shift", default=None)
    parser.add_argument(
        "--grid",
        choices=("2mm", "native", "reader"),
        default="2mm",
        help="measure on a 2 mm grid, the acquisition's own grid, or the bundled reader's "
        "coarse and fine grids",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    suffix = {"2mm": "", "native": "_native", "reader": "_reader_grid"}[args.grid]
    args.out = args.out or Path(f"bench/results/pancreas_oracle{suffix}.json")
    folder = scratch_dir("reportgen-pancreas-oracle-") / "studies"
    synth_dataset(
        folder, args.studies, SynthOptions("pancreas", seed=args.seed, shift=args.shift), workers=2
    )
    template = load_template("pancreas_ct")
    scores = ReportScores(template)
    t0 = time.time()
    for row in read_manifest(folder / "manifest.jsonl"):
        study = load_study(folder / row["dir"])
        if args.grid == "reader":
            measures = reader_grid_measures(study, row)
        elif args.grid == "native":
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
        if args.grid != "reader":
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
        + {
            "native": "the acquisition's own grid",
            "2mm": "a 2 mm grid",
            "reader": "the reader's coarse (4 mm) and fine (1 x 1 x 2 mm) grids",
        }[args.grid],
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
