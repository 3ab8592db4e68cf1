"""Simulated-clinician refinement bench.

Draft reports with the supervised (bundled) model for synthetic studies, let simulated
clinicians (thorough / busy: major errors only / careful, with noise) correct them through
the review app's code into a reward log, refine with PPO, and evaluate reference and
refined model on held-out seeds that were never corrected.

With `--reward learned` the corrections train a reward model (trl RewardTrainer) and PPO
rolls out on other studies no one corrected, scored by that model alone: does what the
clinicians corrected generalise?

    python bench/rl_refine.py [--train 48] [--heldout 30] [--steps 60] [--reward learned]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from bench_io import scratch_dir, use_test_helpers, write_result

from reportgen.model.generate import BUNDLED_MODEL, ReportGenerator
from reportgen.review.store import RewardLog
from reportgen.synth import SynthOptions, synth_dataset
from rl.ppo import PPOConfig
from rl.refine import refine
from rl.reward_model import train_reward_model

use_test_helpers()
from helpers.simulate import correct_drafts_of  # noqa: E402

# never corrected, never rolled out on: the guard's studies (bench/rl_headroom.py reads them too)
HELDOUT = SynthOptions(
    protocol="low_resolution", domain="breast", seed=9001, malignant_fraction=0.5
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--heldout", type=int, default=30)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--samples-per-study", type=int, default=1)
    parser.add_argument("--reward", choices=("corrections", "learned"), default="corrections")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.out is None:
        suffix = "" if args.reward == "corrections" else "_learned_reward"
        args.out = Path(f"bench/results/rl_refine{suffix}.json")
    work = scratch_dir("reportgen-rl-")
    t0 = time.time()
    synth_dataset(
        work / "studies",
        args.train,
        SynthOptions(protocol="low_resolution", domain="breast", seed=5151, malignant_fraction=0.5),
        workers=1,
    )
    synth_dataset(
        work / "heldout",
        args.heldout,
        HELDOUT,
        workers=1,
    )
    log = RewardLog(str(work / "log.db"), log_key=work / "log.key")  # the key dies with work
    correct_drafts_of(log, work / "studies", ReportGenerator(), random.Random(0))
    records = list(log.corrections())
    rollout_studies, reward_model, reward_model_eval = work / "studies", None, None
    if args.reward == "learned":
        reward_model = work / "reward_model"
        reward_model_eval = train_reward_model(records, reward_model)
        rollout_studies = work / "uncorrected"
        synth_dataset(
            rollout_studies,
            args.train,
            SynthOptions(
                protocol="low_resolution", domain="breast", seed=7171, malignant_fraction=0.5
            ),
            workers=1,
        )
    summary = refine(
        BUNDLED_MODEL,
        records,
        rollout_studies,
        work / "refined",
        PPOConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            samples_per_study=args.samples_per_study,
            minibatch_size=args.batch_size // 2,
            lr=args.lr,
        ),
        heldout=work / "heldout",
        checkpoint_every=args.steps,
        reward_model=reward_model,
    )
    history = [
        json.loads(line) for line in (work / "refined" / "history.jsonl").read_text().splitlines()
    ]
    result = {
        "reward": args.reward,
        "reward_model": reward_model_eval,
        "train_corrections": len(records),
        "heldout_studies": args.heldout,
        "steps": args.steps,
        "ppo": summary["ppo"],
        "reference": summary["reference_metrics"],
        "refined": summary["refined_metrics"],
        "delta_field_accuracy_points": round(
            100
            * (
                summary["refined_metrics"]["field_accuracy"]
                - summary["reference_metrics"]["field_accuracy"]
            ),
            2,
        ),
        "worse_on": summary["worse_on"],
        "recommended": summary["recommended"],
        "kl_final": history[-1]["kl"],
        "kl_max": max(h["kl"] for h in history),
        "reward_first5": sum(h["reward"] for h in history[:5]) / min(5, len(history)),
        "reward_last5": sum(h["reward"] for h in history[-5:]) / min(5, len(history)),
        "seconds": round(time.time() - t0, 1),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
