"""Benchmark: which BI-RADS descriptors can be read at all from the phantoms' images?

An upper bound for the readouts, with no detector in the way: crops (32 voxels on the
bundled model's 2 mm grid, every sequence) centred on each true lesion's centroid, from
freshly synthesised breast phantoms; a small 3D CNN trained on the crops of one seed
(flips, rotations, shifts), scored per descriptor on lesions of another seed against the
majority class. Then the consequence for the headline: the BI-RADS assessment of held-out
truth reports when every field is known except margin, which is guessed as well as the
other fields allow (the most frequent margin among training lesions alike in every other
field), and when foci are not found either.

python bench/descriptor_readability.py [--train 4000] [--heldout 600] [--epochs 12]
    [--crops-cache DIR] [--ceiling-train DIR --ceiling-heldout DIR]
    [--protocol low_resolution|clinical] [--out bench/results/descriptor_readability.json]

With `--protocol clinical` the lesions come from lesion views (`reportgen.synth.views`:
the clinical scene acquired in a 64 mm cube around each lesion, never written to disk,
about 0.1 s per case) and each crop is read at the acquisition's own resolution
(`reportgen.preprocessing.lesion_crop`: 48 x 48 x 24 voxels of 0.9 x 0.9 x 2 mm, 43 x 43
x 48 mm, centred on the lesion in world millimetres, every series resampled into it
once from its own grid and scaled within the crop), without the 2 mm model grid.

About 40 min of synthesis (kept in --crops-cache for reruns) and 40 min of training on
2 cores at the defaults. The BI-RADS part reads the truth reports of two synthesised
folders (e.g. the bundled model's training set and its 200 held-out phantoms).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from bench_io import scratch_dir, write_result

from reportgen.data.adapter import study_arrays
from reportgen.io import load_study
from reportgen.model.candidates import crop_around
from reportgen.model.crop_reader import BIRADS_CROP_FIELDS, CropReaderConfig
from reportgen.model.crop_reader_training import (
    balanced_accuracy,
    field_targets,
    train_crop_reader,
)
from reportgen.preprocessing import LESION_CROP, lesion_crop
from reportgen.report import Report, load_template
from reportgen.report.derive import derive
from reportgen.report.metrics import bootstrap_interval
from reportgen.report.values import plain
from reportgen.synth import SynthOptions, synth_one
from reportgen.synth.views import lesion_views

CROP = (32, 32, 32)
_GRID = None
_PROTOCOL = "low_resolution"


def _lesions(args: tuple[int, int]) -> list[tuple[np.ndarray, dict]]:
    """Each true lesion of one new phantom: a crop at its centroid and its true fields."""
    seed, index = args
    torch.set_num_threads(1)
    if _PROTOCOL == "clinical":  # views around each lesion, never written to disk
        options = SynthOptions(domain="breast", seed=seed, protocol=_PROTOCOL)
        return [
            (lesion_crop(v.study(), v.centroid_mm())[0].astype(np.float16), v.fields)
            for v in lesion_views(options, index)
        ]
    work = scratch_dir("readability-")
    try:
        options = SynthOptions(domain="breast", seed=seed)
        meta = synth_one(options, index, work)
        folder = work / meta["dir"]
        report = Report.from_json((folder / "report.json").read_text())
        arrays = study_arrays(load_study(folder), _GRID)
        image, mask = torch.from_numpy(arrays["image"]), arrays["mask"]
        out = []
        for j, finding in enumerate(report.findings):
            voxels = np.argwhere(mask == j + 1)
            if len(voxels):
                crop = crop_around(image, voxels.mean(0), CROP).half().numpy()
                out.append((crop, plain(finding.fields)))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def lesion_crops(seed: int, n: int, workers: int, cache: Path | None) -> tuple:
    """(crops, fields) of the lesions of `n` phantoms of `seed` (from `cache` if there)."""
    stored = cache / f"crops-{_PROTOCOL}-{seed}-{n}.npz" if cache else None
    if stored and stored.exists():
        with np.load(stored) as data:
            return data["crops"], [json.loads(f) for f in data["fields"]]
    crops, fields = [], []
    with mp.get_context("fork").Pool(workers) as pool:
        for found in pool.imap(_lesions, [(seed, i) for i in range(n)], chunksize=4):
            for crop, f in found:
                crops.append(crop)
                fields.append(f)
    if stored:
        stored.parent.mkdir(parents=True, exist_ok=True)
        np.savez(stored, crops=np.stack(crops), fields=np.array([json.dumps(f) for f in fields]))
    return np.stack(crops), fields


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


def train_and_score(xt, ft, xv, fv, epochs: int, seed: int = 0) -> dict:
    """The product's crop reader (`reportgen.model.crop_reader`), trained on the training
    lesions' crops and scored per descriptor on the held-out lesions'."""
    cfg = CropReaderConfig.for_template(load_template("birads_mri"))
    yt, yv = field_targets(ft, cfg), field_targets(fv, cfg)
    present_t = torch.ones((len(xt), xt.shape[1]), dtype=torch.bool)
    model = train_crop_reader(torch.from_numpy(xt), present_t, yt, cfg, epochs=epochs, seed=seed)
    read = model.read(torch.from_numpy(xv), torch.ones((len(xv), xv.shape[1]), dtype=torch.bool))
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
    global _GRID, _PROTOCOL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--heldout", type=int, default=600)
    parser.add_argument("--train-seed", type=int, default=9090)
    parser.add_argument("--heldout-seed", type=int, default=6161)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--max-train-lesions", type=int, default=0, help="train on the first N lesions (0: all)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--crops-cache", type=Path, default=None)
    parser.add_argument("--ceiling-train", type=Path, default=None)
    parser.add_argument("--ceiling-heldout", type=Path, default=None)
    parser.add_argument("--protocol", default="low_resolution")
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/descriptor_readability.json")
    )
    args = parser.parse_args()
    _PROTOCOL = args.protocol
    from reportgen.model.generate import ReportGenerator

    _GRID = ReportGenerator(None).model.input_cfg  # the bundled model's grid
    torch.set_num_threads(args.workers)
    start = time.time()
    result: dict = {}
    if args.ceiling_train and args.ceiling_heldout:
        result["birads_ceiling"] = birads_with_margin_guessed(
            truth_reports(args.ceiling_train), truth_reports(args.ceiling_heldout)
        )
        print(json.dumps(result["birads_ceiling"]))
    xt, ft = lesion_crops(args.train_seed, args.train, args.workers, args.crops_cache)
    xv, fv = lesion_crops(args.heldout_seed, args.heldout, args.workers, args.crops_cache)
    if args.max_train_lesions:
        xt, ft = xt[: args.max_train_lesions], ft[: args.max_train_lesions]
    result["per_descriptor"] = train_and_score(xt, ft, xv, fv, args.epochs)
    result.update(
        train_lesions=len(xt),
        heldout_lesions=len(xv),
        seeds={"train": args.train_seed, "heldout": args.heldout_seed},
        protocol=args.protocol,
        crop_voxels=list(LESION_CROP.shape if args.protocol == "clinical" else CROP),
        crop_spacing_mm=list(LESION_CROP.spacing) if args.protocol == "clinical" else None,
        epochs=args.epochs,
        seconds=round(time.time() - start),
    )
    write_result(args.out, result)


if __name__ == "__main__":
    main()
