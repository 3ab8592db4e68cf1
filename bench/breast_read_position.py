"""Benchmark: does the breast crop reader read a lesion worse where drafting found it?

Each clinical breast phantom of a development seed is drafted by the bundled model with
the place every lesion was read recorded (`reportgen.model.generate.read_candidates`).
For every mass that drafting found (a read place within 20 mm of its centroid), the
crop reader reads the lesion again at the found place, at its true centroid, and 1 and 2
mm (standard deviation per axis, one draw) off the centroid; each descriptor is counted
right against the truth. The found place's distance to the centroid is reported too.
Counts out of the masses found, with 95% Wilson intervals.

python bench/breast_read_position.py [--n 120] [--seed 3131] [--model DIR]
    [--out bench/results/breast_read_position.json]

About 15 min on 2 cores at the defaults.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from bench_io import scratch_dir, wilson, write_result
from tqdm import tqdm

import reportgen.model.generate as generate_module
from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.generators import open_generator
from reportgen.preprocessing import lesion_crop
from reportgen.report import Report
from reportgen.report.rules import Scope, evaluate
from reportgen.synth import SynthOptions, synth_dataset

DESCRIPTORS = ("type", "shape", "margin", "internal_enhancement")
PLACES = ("found", "centroid", "off_1mm", "off_2mm")
FOUND_MM = 20.0  # the evaluation's lesion match (`reportgen.report.metrics.MATCH_MM`)


def read_places(study, generator) -> list[np.ndarray]:
    """Draft `study`, returning where each candidate was read (world mm)."""
    places: list[np.ndarray] = []
    original = generate_module.read_candidates

    def recording(reader, study, placed, affine, *args, **kwargs):
        original(reader, study, placed, affine, *args, **kwargs)
        places.extend(
            generate_module._read_places(c.reading, affine)[0]
            for c in placed
            if c.reading is not None
        )

    generate_module.read_candidates = recording
    try:
        generator.draft(study, generate_module.GenerateOptions(explain=False))
    finally:
        generate_module.read_candidates = original
    return places


def descriptors(reader, template, study, centre) -> dict[str, str]:
    """The crop reader's values at `centre`, each asked only where it applies."""
    crop, present = lesion_crop(study, np.asarray(centre, float))
    probs = reader.read_measures(reader.measure(crop[None], present[None]))[0]
    values: dict[str, str] = {}
    for name, p in probs.items():
        spec = template.field(name)
        if spec.applicable_if is None or evaluate(spec.applicable_if, Scope(values)):
            values[name] = reader.cfg.fields[name][int(torch.argmax(p))]
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--seed", type=int, default=3131)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/breast_read_position.json"))
    args = parser.parse_args()
    start = time.time()
    work = scratch_dir("reportgen-read-position-")
    synth_dataset(work, args.n, SynthOptions(domain="breast", seed=args.seed))
    generator = open_generator(args.model, "birads_mri" if args.model is None else None)
    reader, template = generator.crop_reader, generator.template
    offsets = np.random.default_rng(args.seed)
    right = {place: dict.fromkeys(DESCRIPTORS, 0) for place in PLACES}
    asked = dict.fromkeys(DESCRIPTORS, 0)
    distances: list[float] = []
    for row in tqdm(read_manifest(work), desc="studies", unit="study"):
        folder = work / row["dir"]
        study = load_study(folder)
        truth = Report.model_validate_json((folder / "report.json").read_text())
        mask = nib.load(folder / "lesion_mask.nii.gz")
        labels = np.asarray(mask.dataobj)
        places = read_places(study, generator)
        for k, finding in enumerate(truth.findings):
            voxels = np.argwhere(labels == k + 1)
            if not len(voxels) or finding.fields["type"].value != "mass" or not places:
                continue
            centroid = mask.affine[:3, :3] @ voxels.mean(0) + mask.affine[:3, 3]
            found = min(places, key=lambda p: float(np.linalg.norm(p - centroid)))
            distance = float(np.linalg.norm(found - centroid))
            if distance > FOUND_MM:
                continue
            distances.append(distance)
            at = {
                "found": found,
                "centroid": centroid,
                "off_1mm": centroid + offsets.standard_normal(3),
                "off_2mm": centroid + 2.0 * offsets.standard_normal(3),
            }
            reads = {place: descriptors(reader, template, study, c) for place, c in at.items()}
            for name in DESCRIPTORS:
                if name not in finding.fields:
                    continue
                asked[name] += 1
                for place in PLACES:
                    right[place][name] += reads[place].get(name) == finding.fields[name].value
    write_result(
        args.out,
        {
            "command": f"python bench/breast_read_position.py --n {args.n} --seed {args.seed}",
            "model": str(args.model or "bundled birads_mri"),
            "masses_found": len(distances),
            "found_distance_mm": {
                q: round(float(np.percentile(distances, p)), 2)
                for q, p in (("median", 50), ("p75", 75), ("p90", 90))
            }
            if distances
            else None,
            "right": {
                place: {
                    name: {
                        "right": right[place][name],
                        "of": asked[name],
                        "wilson_95": wilson(right[place][name], asked[name]),
                    }
                    for name in DESCRIPTORS
                }
                for place in PLACES
            },
            "seconds": round(time.time() - start),
        },
    )


if __name__ == "__main__":
    main()
