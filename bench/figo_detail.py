"""Benchmark: the FIGO detail the staging readers measure on their outlines.

For each staging template, N phantoms of a seed never used are drafted by the bundled
reader and compared with their truth: the side of parametrial invasion (cervix), the side
of the metastatic nodes and the largest node's short axis (both templates), each where
the truth states it. A side counts as right only when stated and equal; the short axis by
its absolute error where both state it. 95% Wilson intervals for the sides.

python bench/figo_detail.py [--n 200] [--seed 6267] [--shift none|scanner]
    [--templates figo_cervix_2018,figo_endometrium_2023] [--out bench/results/figo_detail.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_io import scratch_dir, wilson, write_result
from tqdm import tqdm

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.generators import open_generator
from reportgen.report import Report
from reportgen.synth import SynthOptions, synth_dataset

DOMAIN = {"figo_cervix_2018": "cervix", "figo_endometrium_2023": "endometrium"}


def score(template: str, n: int, seed: int, shift: str | None) -> dict:
    work = scratch_dir("reportgen-figo-detail-")
    synth_dataset(work, n, SynthOptions(domain=DOMAIN[template], seed=seed, shift=shift))
    generator = open_generator(template=template)
    sides = {"parametrial_side": [0, 0], "node_side": [0, 0]}
    errors: list[float] = []
    for row in tqdm(read_manifest(work), desc=template, unit="study"):
        folder = work / row["dir"]
        truth = Report.model_validate_json((folder / "report.json").read_text()).fields
        drafted = generator.draft(load_study(folder)).report.fields
        for field, tally in sides.items():
            if field in truth:
                tally[1] += 1
                tally[0] += field in drafted and drafted[field].value == truth[field].value
        if "node_short_axis_mm" in truth and "node_short_axis_mm" in drafted:
            errors.append(
                abs(drafted["node_short_axis_mm"].value - truth["node_short_axis_mm"].value)
            )
    out: dict = {"studies": n}
    for field, (right, stated) in sides.items():
        if stated:
            out[field] = {"right": right, "of": stated, "accuracy_95ci": wilson(right, stated)}
    if errors:
        e = np.asarray(errors)
        out["node_short_axis_mm"] = {
            "mae": round(float(e.mean()), 2),
            "within_2mm": round(float(np.mean(e <= 2)), 3),
            "max": float(e.max()),
            "of": len(errors),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=6267)
    parser.add_argument("--shift", default="none", choices=["none", "scanner"])
    parser.add_argument("--templates", default=",".join(DOMAIN))
    parser.add_argument("--out", type=Path, default=Path("bench/results/figo_detail.json"))
    args = parser.parse_args()
    shift = None if args.shift == "none" else args.shift
    started = time.perf_counter()
    result = {
        "command": f"python bench/figo_detail.py --n {args.n} --seed {args.seed} "
        f"--shift {args.shift}",
        "templates": {
            t: score(t, args.n, args.seed, shift) for t in args.templates.split(",") if t
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
