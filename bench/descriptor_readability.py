"""Benchmark: which BI-RADS descriptors can be read at all from the phantoms' images?

An upper bound for the product's reading, with no detector in the way: every true
lesion of freshly drawn breast phantoms of one seed, read by the product's crop reader
(`reportgen.model.crop_reader`: the lesion cut from the study as acquired around its
true centroid, `reportgen.preprocessing.lesion_crop`, outlined and measured at that
resolution, one boosted-tree classifier per field), fit on one seed and scored per
descriptor on the lesions of another, against the majority class. Twice: with the
reader's own outline (what the product reads, given a perfect centre) and under the
true lesion mask (what a perfect outline would add). Then the consequence for the
headline: the BI-RADS assessment of held-out truth reports when every field is known
except margin, which is guessed as well as the other fields allow, and when foci are
not found either.

python bench/descriptor_readability.py [--train 2000] [--heldout 800]
    [--protocol clinical|low_resolution] [--ceiling-train DIR --ceiling-heldout DIR]
    [--out bench/results/descriptor_readability.json]

Lesions come from lesion views (`reportgen.synth.views`: the scene acquired in a 64 mm
cube around each lesion, never written to disk, about 0.1 s per case). About 10 min on
2 cores at the defaults. The BI-RADS part reads the truth reports of two synthesised
folders (e.g. the bundled model's training set and its 200 held-out phantoms).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import torchio as tio
from bench_io import write_result

from reportgen.io.sequences import PROTOCOL
from reportgen.measure.crop_measures import crop_measures
from reportgen.model.crop_reader import BIRADS_CROP_FIELDS, CropReaderConfig
from reportgen.model.crop_reader_training import (
    acquired_families,
    balanced_accuracy,
    field_targets,
    fit_crop_reader,
)
from reportgen.preprocessing import LESION_CROP, lesion_crop, target_affine
from reportgen.report import Report, load_template
from reportgen.report.derive import derive
from reportgen.report.metrics import bootstrap_interval
from reportgen.report.values import plain
from reportgen.synth import SynthOptions
from reportgen.synth.views import lesion_views

_PROTOCOL = "clinical"


def _lesions(args: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """Each true lesion of one case's views: its measures with the reader's own outline
    and under the true mask, and its true fields."""
    seed, index = args
    torch.set_num_threads(1)
    options = SynthOptions(domain="breast", seed=seed, protocol=_PROTOCOL)
    out = []
    for view in lesion_views(options, index):
        centre = view.centroid_mm()
        crop, present = lesion_crop(view.study(), centre)
        truth = tio.LabelMap(
            tensor=torch.from_numpy((view.labels == view.label).astype(np.int16))[None],
            affine=view.grid.affine,
        )
        target = (LESION_CROP.shape, target_affine(LESION_CROP, centre))
        mask = tio.Resample(target=target)(tio.Subject(m=truth))["m"].data[0].numpy() > 0
        spacing = LESION_CROP.spacing[0]
        out.append(
            (
                crop_measures(crop, present, spacing),
                crop_measures(crop, present, spacing, mask if mask.any() else None),
                view.fields,
            )
        )
    return out


def lesion_measures(seed: int, n: int, workers: int) -> tuple:
    """(own-outline measures, true-mask measures, fields) of the lesions of `n` cases."""
    own, true, fields = [], [], []
    with mp.get_context("fork").Pool(workers) as pool:
        for found in pool.imap(_lesions, [(seed, i) for i in range(n)], chunksize=4):
            for a, b, f in found:
                own.append(a)
                true.append(b)
                fields.append(f)
    return np.stack(own), np.stack(true), fields


def truth_reports(folder: Path) -> list[Report]:
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    return [Report.from_json((folder / r["dir"] / "report.json").read_text()) for r in rows]


def bootstrap_ci(truth: np.ndarray, guess: np.ndarray) -> list[float] | None:
    """95% interval of the balanced accuracy, lesions resampled (the one bootstrap)."""
    pairs = list(zip(truth.tolist(), guess.tolist(), strict=True))
    interval = bootstrap_interval(
        pairs, lambda s: balanced_accuracy(np.array([t for t, _ in s]), np.array([g for _, g in s]))
    )
    return [round(v, 3) for v in interval] if interval else None


def fit_and_score(xt, ft, xv, fv, seed: int = 0) -> dict:
    """The product's crop reader fit on the training lesions' measures and scored per
    descriptor on the held-out lesions' (every series acquired)."""
    cfg = CropReaderConfig.for_template(load_template("birads_mri"))
    every = [acquired_families(np.ones(len(PROTOCOL), bool))]
    model = fit_crop_reader(xt, every * len(xt), ft, cfg, seed)
    yv = field_targets(fv, cfg)
    read = model.read_measures(torch.from_numpy(np.asarray(xv, np.float32)))
    result = {}
    for k, name in enumerate(cfg.fields):
        m = yv[:, k] >= 0
        if m.any():
            truth = yv[m, k].numpy()
            guess = np.array(
                [int(r[name].argmax()) for r, keep in zip(read, m, strict=True) if keep]
            )
            n, values = int(m.sum()), cfg.fields[name]
            result[name] = {
                "n": n,
                "accuracy": round(float((guess == truth).mean()), 3),
                "majority_class": round(int(np.bincount(truth).max()) / n, 3),
                "balanced_accuracy": round(balanced_accuracy(truth, guess), 3),
                "balanced_accuracy_95ci": bootstrap_ci(truth, guess),
                # rows: true value, columns: read value, in the template's order
                "confusion": np.bincount(truth * len(values) + guess, minlength=len(values) ** 2)
                .reshape(len(values), -1)
                .tolist(),
            }
    return result


def birads_with_margin_guessed(train_reports: list, heldout_reports: list) -> dict:
    template = load_template("birads_mri")
    others = [
        k for k in BIRADS_CROP_FIELDS if k not in ("margin", "nme_distribution", "nme_pattern")
    ]
    table, overall = defaultdict(Counter), Counter()
    for report in train_reports:
        for f in (plain(x.fields) for x in report.findings):
            if "margin" in f:
                table[tuple(f.get(k) for k in others)][f["margin"]] += 1
                overall[f["margin"]] += 1
    right = right_no_foci = 0
    for report in heldout_reports:
        fields, findings = plain(report.fields), [plain(x.fields) for x in report.findings]
        truth = derive(template, fields, findings)[1]["assessment"]
        guessed = [
            {
                **f,
                "margin": (table.get(tuple(f.get(k) for k in others)) or overall).most_common(1)[0][
                    0
                ],
            }
            if "margin" in f
            else f
            for f in findings
        ]
        right += derive(template, fields, guessed)[1]["assessment"] == truth
        no_foci = [f for f in guessed if f.get("type") != "focus"]
        right_no_foci += derive(template, fields, no_foci)[1]["assessment"] == truth
    n = len(heldout_reports)
    return {
        "heldout_studies": n,
        "birads_accuracy_margin_guessed": round(right / n, 3),
        "birads_accuracy_margin_guessed_and_foci_missed": round(right_no_foci / n, 3),
    }


def main() -> None:
    global _PROTOCOL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--heldout", type=int, default=800)
    parser.add_argument("--train-seed", type=int, default=9090)
    parser.add_argument("--heldout-seed", type=int, default=6161)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ceiling-train", type=Path, default=None)
    parser.add_argument("--ceiling-heldout", type=Path, default=None)
    parser.add_argument("--protocol", default="clinical")
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/descriptor_readability.json")
    )
    args = parser.parse_args()
    _PROTOCOL = args.protocol
    torch.set_num_threads(args.workers)
    start = time.time()
    result: dict = {}
    if args.ceiling_train and args.ceiling_heldout:
        result["birads_ceiling"] = birads_with_margin_guessed(
            truth_reports(args.ceiling_train), truth_reports(args.ceiling_heldout)
        )
        print(json.dumps(result["birads_ceiling"]))
    own_t, true_t, ft = lesion_measures(args.train_seed, args.train, args.workers)
    own_v, true_v, fv = lesion_measures(args.heldout_seed, args.heldout, args.workers)
    result["per_descriptor"] = fit_and_score(own_t, ft, own_v, fv)
    result["per_descriptor_true_outline"] = fit_and_score(true_t, ft, true_v, fv)
    result.update(
        train_lesions=len(own_t),
        heldout_lesions=len(own_v),
        seeds={"train": args.train_seed, "heldout": args.heldout_seed},
        protocol=args.protocol,
        crop_voxels=list(LESION_CROP.shape),
        crop_spacing_mm=list(LESION_CROP.spacing),
        seconds=round(time.time() - start),
    )
    write_result(args.out, result)
    for name, row in result["per_descriptor"].items():
        ceiling = result["per_descriptor_true_outline"][name]["balanced_accuracy"]
        print(
            f"{name:22s} {row['balanced_accuracy']:.3f} {row['balanced_accuracy_95ci']} (true outline {ceiling:.3f})"
        )


if __name__ == "__main__":
    main()
