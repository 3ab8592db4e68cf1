"""Are side and clock face pure geometry once a lesion is segmented?

On synthetic breast phantoms, each lesion's truth mask is measured in world millimetres
(`reportgen.measure`) and placed by the breast landmarks found in the T2W image (midline,
nipples); the side and clock face are compared with the phantom's report. This measures
the measurement path alone (truth masks, no detector): the ceiling a detector's masks
can reach.

    python bench/measure_position.py [--n 80] [--seed 9001] [--shift scanner]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_io import scratch_dir, write_result

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.measure import measure_lesion
from reportgen.measure.breast import breast_position, find_landmarks
from reportgen.report.compare import clock_hours
from reportgen.report.io import read_report
from reportgen.synth import SynthOptions, synth_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=9001)
    parser.add_argument("--shift", default=None, help="acquisition shift, e.g. scanner")
    parser.add_argument("--out", type=Path, default=Path("bench/results/measure_position.json"))
    args = parser.parse_args()
    t0 = time.time()
    folder = scratch_dir("reportgen-measure-") / "studies"
    synth_dataset(
        folder,
        args.n,
        SynthOptions(protocol="low_resolution", domain="breast", seed=args.seed, shift=args.shift),
    )
    side_ok = clock_ok = lesions = 0
    clock_off, size_error = [], []
    for row in read_manifest(folder):
        study = load_study(folder / row["dir"])
        truth = read_report(folder / row["dir"] / "report.json")
        t2 = study.sequences["T2W"]
        marks = find_landmarks(t2.data, t2.affine)
        labels, affine = study.lesion_mask.data, study.lesion_mask.affine
        for number, finding in enumerate(truth.findings, start=1):
            if not (labels == number).any():
                continue
            geometry = measure_lesion(labels == number, affine)
            position = breast_position(geometry.centre_mm, marks)
            lesions += 1
            side_ok += position.laterality == finding.fields["laterality"].value
            clock = f"clock_{position.clock_hour}"
            clock_ok += clock == finding.fields["clock"].value
            clock_off.append(clock_hours(clock, str(finding.fields["clock"].value)))
            size_error.append(geometry.longest_diameter_mm - float(finding.fields["size_mm"].value))
    write_result(
        args.out,
        {
            "studies": args.n,
            "seed": args.seed,
            "shift": args.shift,
            "lesions": lesions,
            "laterality_correct": side_ok,
            "clock_correct": clock_ok,
            "clock_hours_off_histogram": np.bincount(clock_off, minlength=7).tolist(),
            "longest_diameter_minus_reported_size_mm": {
                "mean": round(float(np.mean(size_error)), 2),
                "mean_abs": round(float(np.mean(np.abs(size_error))), 2),
            },
            "seconds": round(time.time() - t0, 1),
        },
    )


if __name__ == "__main__":
    main()
