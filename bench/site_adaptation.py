"""Site adaptation: a bundled reader at a shifted site, refined from that site's corrections.

A hospital runs a bundled reader on its own scanner (`--shift scanner`), its clinicians
(simulated: thorough, busy, careful, inattentive) correct the drafts of `--corrections`
studies through the review app's code into a SQLite reward log, and the reader is refined
from that log by each method. Parent and refined readers are scored on held-out studies
of that site and of the original one (none corrected), for `--seeds` correction sets
(each a new draw of studies and of the clinicians' noise). Each held-out study is
prepared once and drafted by every model from the same tensors.

    python bench/site_adaptation.py --template orads_mri [--corrections 100] [--heldout 200]
        [--seeds 3] [--methods supervised,dpo,grpo]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
from bench_io import scratch_dir, use_test_helpers, write_result
from tqdm import tqdm

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.field_generate import FieldReaderGenerator
from reportgen.model.field_model import save_reader
from reportgen.model.generators import bundled_model
from reportgen.report.io import read_report
from reportgen.report.metrics import ReportScores
from reportgen.review.store import RewardLog
from reportgen.synth import SynthOptions, synth_dataset
from rl.reader_refine import METHODS, ReaderRefineConfig, collect_feedback, refit

use_test_helpers()
from helpers.simulate import correct_drafts_of  # noqa: E402

DOMAIN = {
    "orads_mri": "ovary",
    "figo_cervix_2018": "cervix",
    "figo_endometrium_2023": "endometrium",
}
SITE_SEED, ORIGINAL_SEED = 39102, 39101  # held-out; never corrected, never used before
CORRECTION_SEED = 39200  # + k for the k-th correction set
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def prepared(generator: FieldReaderGenerator, folder: Path) -> list:
    """Each study's tensors on the reader's grid and its truth, prepared once."""
    out = []
    for row in tqdm(read_manifest(folder / "manifest.jsonl"), desc=f"preparing {folder.name}"):
        study = load_study(folder / row["dir"])
        out.append(
            (
                row["dir"],
                *generator.tensors(study),
                read_report(folder / row["dir"] / "report.json"),
            )
        )
    return out


def scores(generator: FieldReaderGenerator, studies: list) -> dict:
    """Headline and field accuracy of `generator`'s drafts of prepared studies."""
    scored = ReportScores(generator.template)
    for study_id, image, present, affine, truth in studies:
        scored.add(generator.draft_tensors(study_id, image, present, affine).report, truth)
    summary = scored.summary()
    return {
        "headline_accuracy": summary[f"{scored.headline}_accuracy"],
        "field_accuracy": summary["field_accuracy"],
    }


def interval(values: list[float]) -> dict:
    """Mean over seeds with its 95% t-interval."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": round(mean, 4), "interval_95": None, "seeds": values}
    half = T_975.get(len(values) - 1, 1.96) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return {
        "mean": round(mean, 4),
        "interval_95": [round(mean - half, 4), round(mean + half, 4)],
        "seeds": values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", choices=sorted(DOMAIN), default="orads_mri")
    parser.add_argument("--corrections", type=int, default=100)
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--rounds", type=int, default=ReaderRefineConfig.rounds)
    parser.add_argument("--step", type=float, default=ReaderRefineConfig.step)
    parser.add_argument("--epochs", type=int, default=ReaderRefineConfig.epochs)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    methods = args.methods.split(",")
    out = args.out or Path(f"bench/results/site_adaptation_{args.template}.json")
    domain, t0 = DOMAIN[args.template], time.time()
    work = scratch_dir("reportgen-site-")
    model_dir = bundled_model(args.template)
    parent = FieldReaderGenerator(model_dir)
    heldout = {}
    for name, seed, shift in (("site", SITE_SEED, "scanner"), ("original", ORIGINAL_SEED, None)):
        options = SynthOptions(domain=domain, seed=seed, shift=shift)
        synth_dataset(work / name, args.heldout, options, workers=2)
        heldout[name] = prepared(parent, work / name)
    parent_scores = {name: scores(parent, studies) for name, studies in heldout.items()}
    print("parent", parent_scores, flush=True)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for k in range(args.seeds):
        folder = work / f"corrections{k}"
        synth_dataset(
            folder,
            args.corrections,
            SynthOptions(domain=domain, seed=CORRECTION_SEED + k, shift="scanner"),
            workers=2,
        )
        log = RewardLog(str(folder / "log.db"), log_key=folder / "log.key")
        correct_drafts_of(log, folder, parent, random.Random(k))
        records = list(log.corrections())
        feedback = collect_feedback(parent, records, folder)
        changed = sum(
            1 for r in records if r.diff.changes or r.diff.added_findings or r.diff.removed_findings
        )
        for method in methods:
            cfg = ReaderRefineConfig(
                method=method, rounds=args.rounds, step=args.step, epochs=args.epochs, seed=k
            )
            model, _ = refit(parent.model, feedback, cfg)
            refined = FieldReaderGenerator(save_reader(model, work / f"{method}{k}"))
            result = {name: scores(refined, studies) for name, studies in heldout.items()}
            runs[method].append(
                {"seed": k, "corrections": feedback.used, "changed": changed, **result}
            )
            print(method, k, result, flush=True)
    drop = {
        m: parent_scores["original"][m] - parent_scores["site"][m]
        for m in ("headline_accuracy", "field_accuracy")
    }
    table = {}
    for method, rows in runs.items():
        entry = {}
        for metric in ("headline_accuracy", "field_accuracy"):
            for name in ("site", "original"):
                entry[f"{name}_{metric}"] = interval([r[name][metric] for r in rows])
                entry[f"{name}_{metric}_delta"] = interval(
                    [round(r[name][metric] - parent_scores[name][metric], 4) for r in rows]
                )
            if drop[metric] > 0:
                entry[f"recovered_share_{metric}"] = interval(
                    [
                        round((r["site"][metric] - parent_scores["site"][metric]) / drop[metric], 4)
                        for r in rows
                    ]
                )
        table[method] = entry
    write_result(
        out,
        {
            "template": args.template,
            "command": f"python bench/site_adaptation.py --template {args.template} --corrections {args.corrections} --heldout {args.heldout} --seeds {args.seeds} --methods {args.methods}",
            "corrections_per_seed": args.corrections,
            "heldout_per_site": args.heldout,
            "seeds": {
                "site_heldout": SITE_SEED,
                "original_heldout": ORIGINAL_SEED,
                "corrections": [CORRECTION_SEED + k for k in range(args.seeds)],
            },
            "settings": {"rounds": args.rounds, "step": args.step, "epochs": args.epochs},
            "parent": parent_scores,
            "site_drop": {k: round(v, 4) for k, v in drop.items()},
            "methods": table,
            "runs": runs,
            "seconds": round(time.time() - t0, 1),
        },
    )


if __name__ == "__main__":
    main()
