"""Benchmark: does masked-image pretraining of a staging reader help, and does lesion-aware
masking beat random masking? Held-out accuracy with paired 95% bootstrap intervals.

Three arms, same labelled studies, same outline epochs, same seed:
- scratch: the reader trained on the first `--labelled` studies of the pool only;
- random: its U-Net first pretrained on every pool study (images only) with random
  masking (`reportgen pretrain-reader --masking random`), then trained as scratch;
- lesion: the same with lesion-aware masking, the lesion prior being the scratch
  reader's outline on the pool (so no mask beyond the labelled studies' is used).
Each is evaluated on held-out studies no step sees; arms are compared study by study
(`reportgen.report.metrics.paired_difference`). One training seed per arm: the intervals
cover the held-out sample, not the training seed. `--transfer encoder` starts only the
encoder from pretraining (the decoder fresh); with `--keep DIR`, models and evaluations
already in DIR are reused, so a second transfer mode costs no second pretraining.

    python bench/reader_masking.py --pool TRAIN --held HELD --cache-dir CACHE
        [--labelled 100] [--epochs 40] [--pretrain-epochs 8] [--transfer encoder]
        [--keep DIR] [--out bench/results/reader_masking_<template>[_encoder].json]

On 2 CPU cores one domain takes about 45 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_io import scratch_dir, write_result

from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.model.evaluate import evaluate_model
from reportgen.model.field_training import FieldTrainArgs, train_field_reader
from reportgen.model.outline_pretraining import OutlinePretrainArgs, pretrain_outline
from reportgen.report.metrics import paired_difference

ARMS = ("scratch", "random", "lesion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True, help="training phantoms (seed 101)")
    parser.add_argument("--held", type=Path, required=True, help="held-out phantoms")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--labelled", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--transfer", choices=("encoder-decoder", "encoder"), default="encoder-decoder"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep (and reuse) models here")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = args.keep or scratch_dir("reportgen-masking-")
    started = time.time()
    seconds, evaluations = {}, {}
    for arm in ARMS:
        t0 = time.time()
        name = arm if arm == "scratch" or args.transfer == "encoder-decoder" else f"{arm}-encoder"
        reused = (work / name / "config.json").is_file()
        init = None
        if arm != "scratch":
            init = work / f"pretrained-{arm}"
            if not (init / "config.json").is_file():
                pretrain_outline(
                    OutlinePretrainArgs(
                        data=args.pool, out=init, masking=arm, epochs=args.pretrain_epochs,
                        seed=args.seed, cache_dir=args.cache_dir,
                        prior_from=work / "scratch" if arm == "lesion" else None,
                    )
                )  # fmt: skip
        if not (work / name / "config.json").is_file():
            train_field_reader(
                FieldTrainArgs(
                    data=args.pool, out=work / name, epochs=args.epochs, seed=args.seed,
                    cache_dir=args.cache_dir, limit=args.labelled, init_from=init,
                    init_decoder=args.transfer == "encoder-decoder",
                )
            )  # fmt: skip
        done = work / f"eval-{name}" / "evaluation.json"
        if done.is_file():
            summary = json.loads(done.read_text())
        else:
            summary = evaluate_model(
                args.held, work / name, work / f"eval-{name}", ["all"], baselines=False,
                cache_dir=args.cache_dir,
            )  # fmt: skip
        evaluations[arm] = summary
        seconds[arm] = None if reused else round(time.time() - t0, 1)  # None: from --keep
        print(name, summary["results"]["model[all]"][f"{summary['headline']}_accuracy"])
    headline = evaluations["scratch"]["headline"]
    results = {arm: evaluations[arm]["results"]["model[all]"] for arm in ARMS}
    per_study = {arm: results[arm]["headline_by_study"] for arm in ARMS}
    summary = {
        "notice": NOT_FOR_CLINICAL_USE,
        "template": evaluations["scratch"]["template"],
        "pool": str(args.pool),
        "held_out": str(args.held),
        "labelled": args.labelled,
        "outline_epochs": args.epochs,
        "pretrain_epochs": args.pretrain_epochs,
        "transfer": args.transfer,
        "seed": args.seed,
        "arms": {
            arm: {
                f"{headline}_accuracy": results[arm][f"{headline}_accuracy"],
                f"{headline}_accuracy_95ci": results[arm]["intervals_95"][f"{headline}_accuracy"],
                "field_accuracy": results[arm]["field_accuracy"],
                "size_mae_mm": results[arm]["size_mae_mm"],
                "valid": results[arm]["template_compliance"],
                "seconds": seconds[arm],
            }
            for arm in ARMS
        },
        f"{headline}_accuracy_difference": {
            "lesion_minus_random": paired_difference(per_study["lesion"], per_study["random"]),
            "random_minus_scratch": paired_difference(per_study["random"], per_study["scratch"]),
            "lesion_minus_scratch": paired_difference(per_study["lesion"], per_study["scratch"]),
        },
        "seconds": round(time.time() - started, 1),
    }
    template = summary["template"]
    suffix = "" if args.transfer == "encoder-decoder" else f"_{args.transfer}"
    out = args.out or Path(f"bench/results/reader_masking_{template}{suffix}.json")
    write_result(out, summary)


if __name__ == "__main__":
    main()
