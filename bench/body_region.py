"""Does the body-region reader tell breast from pelvis, and flag what it has never seen?

Fresh phantoms of every domain (seeds the reader never trained or calibrated on), with
and without another scanner's acquisition, are read for their region and for whether
they are unusual (distance above the 99th-percentile threshold); real and foreign
studies (the ProstateX prostate, the multi-vendor DICOM of dicom2nifti's tests: head,
spine, knee, ...) are read untagged, as a NIfTI would be. Accuracy with a 95% Wilson
interval; the unusual rate is what a radiologist would see as a warning.

    python bench/body_region.py [--n 100] [--seed 9100] [--model reportgen/demo_model/body_region]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench_io import scratch_dir, wilson, write_result

from reportgen.data import read_manifest
from reportgen.errors import ReportgenError
from reportgen.io import load_study
from reportgen.io.study import Study
from reportgen.model.body_region import load_region_model, read_region
from reportgen.model.fitness import BUNDLED_REGION_MODEL
from reportgen.synth import SynthOptions, synth_dataset

DOMAIN_REGION = {"breast": "breast", "cervix": "pelvis", "endometrium": "pelvis", "ovary": "pelvis"}
FOREIGN = Path("tests/data/dicom2nifti")
REAL = Path("tests/data/prostatex")


def untagged(study: Study) -> Study:
    return Study("untagged", dict(study.sequences), study.source, study.form)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=9100)
    parser.add_argument("--model", type=Path, default=BUNDLED_REGION_MODEL)
    parser.add_argument("--out", type=Path, default=Path("bench/results/body_region.json"))
    args = parser.parse_args()
    t0 = time.time()
    model = load_region_model(args.model)
    root = scratch_dir("reportgen-region-")
    phantoms = {}
    for k, (domain, region) in enumerate(DOMAIN_REGION.items()):
        for shift in (None, "scanner"):
            folder = root / f"{domain}-{shift or 'plain'}"
            seed = args.seed + 10 * k + (shift is not None)
            synth_dataset(
                folder,
                args.n,
                SynthOptions(protocol="low_resolution", domain=domain, seed=seed, shift=shift),
            )
            readings = [
                read_region(model, load_study(folder / r["dir"])) for r in read_manifest(folder)
            ]
            right = sum(r.region == region for r in readings)
            unusual = sum(r.unusual for r in readings)
            phantoms[folder.name] = {
                "n": len(readings),
                "accuracy": round(right / len(readings), 3),
                "accuracy_95ci": wilson(right, len(readings)),
                "unusual_rate": round(unusual / len(readings), 3),
            }
            print(folder.name, phantoms[folder.name])
    others = {}
    foreign = sorted(FOREIGN.rglob("*_ground_truth.nii.gz"))  # read as if they were T2W
    for path in [*sorted(p for p in REAL.iterdir() if p.is_dir()), *foreign]:
        try:
            study = untagged(load_study(path, sequence=None if path.is_dir() else "T2W"))
            reading = read_region(model, study)
        except ReportgenError as exc:
            others[str(path)] = {"unread": str(exc)[:120]}
            continue
        others[str(path)] = {
            "region": reading.region,
            "probability": reading.probability,
            "distance": round(reading.distance, 2),
            "unusual": reading.unusual,
        }
        print(path, others[str(path)])
    write_result(
        args.out,
        {
            "command": "python bench/body_region.py "
            + f"--n {args.n} --seed {args.seed} --model {args.model}",
            "threshold": round(float(model.threshold), 3),
            "phantoms": phantoms,
            "real_and_foreign_untagged": others,
            "seconds": round(time.time() - t0, 1),
        },
    )


if __name__ == "__main__":
    main()
