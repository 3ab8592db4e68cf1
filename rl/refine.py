"""`reportgen refine`: PPO from the reward log, guarded by a held-out comparison.

Corrections (draft + signed report) become per-study targets; each PPO step samples
reports for a batch of corrected studies under the template constraints and scores
them with `rl.rewards.correction_reward` against what the clinician signed. At the end
the refined model and the reference are evaluated side by side on held-out studies
that were never corrected; a refined model that is worse on a headline metric is
written but marked NOT RECOMMENDED, never presented as the better model.

With a learned reward model (`reward_model=`), the rollouts are drafts of any studies,
corrected or not, scored by `rl.reward_model.ReportScorer` minus the same violation
penalty: the test of whether what clinicians corrected generalises to studies no one
has looked at.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reportgen.checkpoint import (
    STATE,
    load_weights,
    read_config,
    read_state,
    read_weights,
    refined_facts,
    write_checkpoint,
    write_model_card,
)
from reportgen.errors import ConfigError, InputError
from reportgen.io import load_study
from reportgen.model.generate import GenerateOptions, ReportGenerator
from reportgen.model.generator import Generator
from reportgen.model.modeling import TIED, save_model
from reportgen.report import Report
from reportgen.report.correction import CorrectionRecord
from reportgen.report.io import read_report
from reportgen.report.metrics import ReportScores
from rl.ppo import PPOConfig, PPOTrainer
from rl.rewards import VIOLATION_PENALTY, correction_reward, violation_count

MIN_CORRECTIONS = 8
GUARDED = ("field_accuracy", "headline_accuracy", "mean_reward")
WORSE_BY = 0.01  # one point


@dataclass
class Target:
    study_id: str
    image: torch.Tensor
    present: torch.Tensor
    signed: Report | None  # None: uncorrected (a learned reward model scores it)


def check_template(records: list[CorrectionRecord], template_id: str) -> None:
    """Refuses a log of another template's corrections, or too few to learn from."""
    templates = {r.template_id for r in records}
    if templates - {template_id}:
        raise ConfigError(
            f"the model writes {template_id} reports but the log's corrections are for "
            f"{', '.join(sorted(templates - {template_id}))}; refine a model of the same template"
        )
    if len(records) < MIN_CORRECTIONS:
        raise ConfigError(
            f"the reward log holds {len(records)} corrections of {template_id}; refine needs at "
            f"least {MIN_CORRECTIONS}"
        )


def corrected_targets(
    records: list[CorrectionRecord], studies: Path, template_id: str, generator: ReportGenerator
) -> list[Target]:
    """The corrected studies' images and signed reports; refuses what PPO cannot use."""
    check_template(records, template_id)
    root = studies.resolve()
    targets = []
    for record in tqdm(records, desc="loading corrected studies", leave=False):
        if not record.study_path:
            continue
        path = (root / record.study_path).resolve()
        if root not in path.parents and path != root:
            continue
        image, present, _ = generator.tensors(load_study(path))
        targets.append(Target(record.study_id, image, present, record.corrected))
    if len(targets) < MIN_CORRECTIONS:
        raise InputError(
            studies,
            f"only {len(targets)} corrected studies' images were found here; refine needs at least {MIN_CORRECTIONS}",
        )
    return targets


def study_targets(studies: Path, generator: ReportGenerator, log=print) -> list[Target]:
    """Every study folder under `studies`, corrected or not, for learned-reward rollouts."""
    targets, skipped = [], 0
    folders = sorted(p for p in studies.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in tqdm(folders, desc="loading studies", leave=False):
        try:
            image, present, _ = generator.tensors(load_study(folder))
        except InputError:
            skipped += 1
            continue
        targets.append(Target(folder.name, image, present, None))
    if skipped:
        log(f"skipped {skipped} folders of {studies} that are not readable studies")
    if len(targets) < MIN_CORRECTIONS:
        raise InputError(
            studies,
            f"{len(targets)} readable studies; refining with a reward model needs at least {MIN_CORRECTIONS}",
        )
    return targets


def learned_reward(scorer):
    """PPO's score callback from a reward model: its score minus the violation penalty.

    An unparseable rollout (the constraints make these rare) scores one below the batch's
    worst, since the reward model's scale is its own."""

    def score(reports: list[Report | None], study_ids) -> list[float]:
        valid = [r for r in reports if r is not None]
        raw = iter(scorer.score(valid)) if valid else iter(())
        values = [
            next(raw) - VIOLATION_PENALTY * violation_count(r) if r is not None else None
            for r in reports
        ]
        floor = min((v for v in values if v is not None), default=0.0) - 1.0
        return [floor if v is None else v for v in values]

    return score


def heldout_metrics(generator: Generator, folder: Path, limit: int | None = None) -> dict:
    """Greedy drafts of held-out studies vs their truth: the guard's metrics, defined once
    in `reportgen.report.metrics` (the same numbers `reportgen evaluate` reports)."""
    from reportgen.data import read_manifest

    rows = read_manifest(folder / "manifest.jsonl")[:limit]
    scores = ReportScores(generator.template)
    rewards = []
    for row in tqdm(rows, desc="held-out evaluation", leave=False):
        study = load_study(folder / row["dir"])
        truth = read_report(folder / row["dir"] / "report.json")
        draft = generator.draft(study, GenerateOptions(explain=False)).report
        scores.add(draft, truth)
        rewards.append(correction_reward(draft, truth).reward)
    summary = scores.summary()
    return {
        "n": len(rows),
        "field_accuracy": summary["field_accuracy"],
        "headline": scores.headline,
        "headline_accuracy": summary[f"{scores.headline}_accuracy"],
        "mean_reward": float(np.mean(rewards)) if rewards else 0.0,
        "size_mae_mm": summary["size_mae_mm"],
    }


def guard(
    parent: Path, refined: Path, heldout: Path | None, limit: int | None = None, log=print
) -> dict:
    """Parent and refined model side by side on held-out studies no one corrected; a
    refined model worse by a point on a guarded metric is marked NOT RECOMMENDED in its
    folder, never presented as the better model. Without held-out studies: not compared,
    not recommended."""
    from reportgen.model.generators import open_generator

    if heldout is None:
        return {
            "recommended": False,
            "note": "no --heldout set: the refined model was not compared; not recommended",
        }
    log("evaluating reference and refined model on held-out studies ...")
    new = heldout_metrics(open_generator(refined), heldout, limit)
    reference = heldout_metrics(open_generator(parent), heldout, limit)
    worse = [m for m in GUARDED if new[m] < reference[m] - WORSE_BY]
    if worse:
        (refined / "NOT_RECOMMENDED").write_text(
            f"Worse than the reference on held-out {', '.join(worse)} (see refine_summary.json).\n"
        )
    return {
        "reference_metrics": reference,
        "refined_metrics": new,
        "worse_on": worse,
        "recommended": not worse,
    }


VALUE_HEAD_TYPE = "reportgen-ppo-value-head"


def _save_checkpoint(trainer: PPOTrainer, generator: ReportGenerator, folder: Path) -> None:
    """The policy as a report model directory, and beside it (value_head/) the value head
    with the optimiser, KL coefficient and step needed to resume exactly."""
    save_model(generator.model, generator.vocab, folder)
    state = trainer.state_dict()
    write_checkpoint(
        folder / "value_head",
        state["value_head"],
        {"step": state["step"]},
        VALUE_HEAD_TYPE,
        state={"optimizer": state["optimizer"], "kl_coef": state["kl_coef"], "step": state["step"]},
    )


def _load_checkpoint(trainer: PPOTrainer, folder: Path) -> None:
    """Strict: every tensor of the policy and the value head must be there, and no other."""
    load_weights(trainer.generator.model, folder, derived=(TIED,))
    read_config(folder / "value_head", VALUE_HEAD_TYPE)
    value_head = read_weights(folder / "value_head")
    trainer.load_state_dict({"value_head": value_head, **read_state(folder / "value_head")})


def refine(
    model_dir: Path,
    records: list[CorrectionRecord],
    studies: Path,
    out: Path,
    config: PPOConfig,
    heldout: Path | None = None,
    heldout_limit: int | None = None,
    resume: bool = False,
    checkpoint_every: int = 50,
    reward_model: Path | None = None,
    lineage: dict | None = None,
    log=print,
) -> dict:
    generator = ReportGenerator(model_dir)
    parent_sha256 = generator.checkpoint
    if reward_model is None:
        targets = corrected_targets(records, studies, generator.template.id, generator)
        by_id = {t.study_id: t for t in targets}

        def score(reports, study_ids):
            return [
                correction_reward(r, by_id[i].signed).reward if r is not None else -1.0
                for r, i in zip(reports, study_ids, strict=True)
            ]
    else:
        from rl.reward_model import ReportScorer

        scorer = ReportScorer(reward_model)
        if scorer.template.id != generator.template.id:
            raise ConfigError(
                f"the model writes {generator.template.id} reports but the reward model judges "
                f"{scorer.template.id}; use a reward model of the same template"
            )
        targets = study_targets(studies, generator, log)
        score = learned_reward(scorer)
    trainer = PPOTrainer(generator, config)
    last = out / "last"
    if resume:
        if not (last / "value_head" / STATE).is_file():
            raise InputError(last, "nothing to resume (no checkpoint)")
        _load_checkpoint(trainer, last)
    elif out.exists() and any(out.iterdir()):
        raise InputError(out, "exists and is not empty (use --resume to continue)")
    out.mkdir(parents=True, exist_ok=True)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"))
    history = []
    bar = tqdm(
        range(trainer.step, config.steps),
        desc="refine (PPO)",
        initial=trainer.step,
        total=config.steps,
    )
    for step in bar:
        rng = random.Random(config.seed * 7919 + step)
        per_step = max(1, config.batch_size // config.samples_per_study)
        batch = rng.sample(targets, min(per_step, len(targets)))
        images = torch.cat([t.image for t in batch])
        present = torch.cat([t.present for t in batch])
        ids = [t.study_id for t in batch]
        stats = trainer.train_step(images, present, ids, score)
        history.append({"step": step + 1, **stats})
        for key, value in stats.items():
            writer.add_scalar(f"ppo/{key}", value, step + 1)
        bar.set_postfix(
            reward=f"{stats['reward']:.3f}",
            kl=f"{stats['kl']:.3f}",
            clip=f"{stats['clipfrac']:.2f}",
        )
        if (step + 1) % checkpoint_every == 0 or step + 1 == config.steps:
            _save_checkpoint(trainer, generator, last)
    writer.close()
    generator.model.cfg.version = f"{generator.model.cfg.version}+ppo{config.steps}"
    sha = save_model(generator.model, generator.vocab, out / "model")
    summary = {
        "method": "ppo",
        "reference": str(model_dir),
        "parent_sha256": parent_sha256,
        **(lineage or {}),
        "reward": "learned" if reward_model else "corrections",
        "reward_model": str(reward_model) if reward_model else None,
        "corrections": len(records),
        "studies": len(targets),
        "ppo": config.to_dict(),
        "checkpoint_sha256": sha,
        "final": history[-1] if history else None,
    }
    summary["corrections_used"] = len(targets) if reward_model is None else 0
    summary.update(guard(model_dir, out / "model", heldout, heldout_limit, log))
    summary["guard"] = {k: summary[k] for k in ("recommended", "worse_on") if k in summary}
    write_model_card(
        out / "model",
        f"{generator.model.cfg.name} refined ({generator.template.id})",
        [
            f"Template: `{generator.template.id}`; the parent's card says what it reads and how.",
            *refined_facts(summary),
        ],
    )
    (out / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (out / "refine_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
