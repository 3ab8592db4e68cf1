"""`reportgen refine` (PPO from the reward log) and `reportgen rewards` (reward statistics)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import out_option, seed_option
from reportgen.cli.review_commands import DB_HELP
from reportgen.errors import ConfigError, InputError


def existing_log(db: str):
    """The reward log a learner reads: a SQLite file that is not there is refused, never
    created empty as a side effect of reading it."""
    from sqlalchemy.engine import make_url

    from reportgen.review.store import RewardLog, database_url

    url = make_url(database_url(db))
    local = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if local and not Path(url.database).is_file():
        raise InputError(Path(db), "no reward log here (`reportgen review` creates one)")
    return RewardLog(db)


@app.command()
def refine(
    model: Path = typer.Option(
        None, "--model", help="Model to refine (default: the bundled model)."
    ),
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    studies: Path = typer.Option(
        ...,
        "--studies",
        help="The studies folder the review app served (with --reward-model: any studies).",
    ),
    out: Path = out_option("Output folder (model/, refine_summary.json, tb/)."),
    steps: int = typer.Option(200, "--steps"),
    batch_size: int = typer.Option(8, "--batch-size", help="Drafts (rollouts) per PPO step."),
    samples_per_study: int = typer.Option(
        1,
        "--samples-per-study",
        help="Drafts of each study per step; above 1, each draft is rewarded relative to "
        "the study's other drafts (leave-one-out baseline).",
    ),
    lr: float = typer.Option(5e-5, "--lr"),
    kl_coef: float = typer.Option(0.05, "--kl-coef", help="Initial KL penalty coefficient."),
    target_kl: float = typer.Option(
        1.0, "--target-kl", help="Per-report KL the controller aims for."
    ),
    heldout: Path = typer.Option(
        None, "--heldout", help="Held-out studies with truth (never corrected) for the guard."
    ),
    heldout_limit: int = typer.Option(None, "--heldout-limit"),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every"),
    seed: int = seed_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last."),
    reward_model: Path = typer.Option(
        None,
        "--reward-model",
        help="Score rollouts of every study in --studies with this reward model "
        "(`reportgen reward-model`) instead of the log's corrections; --db is not read.",
    ),
    method: str = typer.Option(
        None,
        "--method",
        help="How the model learns: a report decoder by ppo; a reader (staging, O-RADS) by "
        "supervised (default), dpo or grpo (docs/learning.md compares them).",
    ),
    rounds: int = typer.Option(
        20, "--rounds", help="Reader: boosting rounds appended to each tree-read criterion."
    ),
) -> None:
    """Refine a model against clinicians' corrections: the report decoder with PPO, a
    reader by continuing its trees and heads on the signed values."""
    import torch

    from reportgen.model.field_reader import is_field_reader
    from reportgen.model.generate import BUNDLED_MODEL
    from rl.ppo import PPOConfig
    from rl.reader_refine import METHODS
    from rl.refine import refine as run_refine

    if steps < 1 or batch_size < 1 or samples_per_study < 1:
        raise ConfigError("--steps, --batch-size and --samples-per-study must be at least 1")
    if not studies.is_dir():
        raise InputError(studies, "not a folder")
    if heldout is not None and not (heldout / "manifest.jsonl").is_file():
        raise InputError(
            heldout, "no manifest.jsonl (held-out studies with truth, e.g. from `reportgen synth`)"
        )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if reward_model is not None and not (reward_model / "reward_model.json").is_file():
        raise InputError(reward_model, "not a reward model (no reward_model.json)")
    model = model or BUNDLED_MODEL
    reader = is_field_reader(model)
    if method is not None and method not in ("ppo", *METHODS):
        raise ConfigError(f"unknown method {method!r}; choose one of ppo, {', '.join(METHODS)}")
    if method is not None and (method == "ppo") == reader:
        raise ConfigError(
            f"--method {method} does not refine this model: a reader takes supervised, dpo or "
            "grpo; a report decoder takes ppo"
        )
    records, lineage = [], {}
    if reward_model is None:
        log = existing_log(db)
        log.check_chain()  # never learn from a log someone rewrote
        records = list(log.corrections())
        links, head = log.chain_head()
        lineage = {
            "log_chain_head": {"links": links, "sha256": head},
            "corrections": len(records),
            "clinicians": len({r.clinician for r in records}),
        }
    if reader:
        from rl.reader_refine import ReaderRefineConfig, refine_reader

        if reward_model is not None:
            raise ConfigError("--reward-model scores decoder rollouts; a reader learns from --db")
        result = refine_reader(
            model,
            records,
            studies,
            out,
            ReaderRefineConfig(method=method or "supervised", rounds=rounds, seed=seed),
            lineage,
            heldout=heldout,
            heldout_limit=heldout_limit,
            log=typer.echo,
        )
        _print_guard(result["guard"], out)
        return
    config = PPOConfig(
        steps=steps,
        batch_size=batch_size,
        samples_per_study=samples_per_study,
        minibatch_size=max(1, batch_size // 2),
        lr=lr,
        init_kl_coef=kl_coef,
        target_kl=target_kl,
        seed=seed,
    )
    summary = run_refine(
        model,
        records,
        studies,
        out,
        config,
        heldout=heldout,
        heldout_limit=heldout_limit,
        resume=resume,
        checkpoint_every=checkpoint_every,
        reward_model=reward_model,
        lineage=lineage,
        log=typer.echo,
    )
    _print_guard(summary, out)


def _print_guard(summary: dict, out: Path) -> None:
    """The guard's comparison, metric by metric, and its verdict."""
    if "refined_metrics" in summary:
        for name in ("field_accuracy", "headline_accuracy", "mean_reward", "size_mae_mm"):
            ref, new = summary["reference_metrics"][name], summary["refined_metrics"][name]
            typer.echo(
                f"{name:22s} reference {ref if ref is None else round(ref, 4)}  refined {new if new is None else round(new, 4)}"
            )
    verdict = "RECOMMENDED" if summary["recommended"] else "NOT RECOMMENDED (kept for inspection)"
    typer.echo(f"refined model: {out / 'model'} — {verdict}")


@app.command()
def rewards(
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Reward statistics of the log's corrections, per field and per clinician."""
    from rl.rewards import correction_reward

    per_field: dict[str, int] = defaultdict(int)
    per_clinician: dict[str, list[float]] = defaultdict(list)
    n = 0
    for record in existing_log(db).corrections():
        n += 1
        for change in record.diff.changes:
            per_field[change.field] += 1
        per_field["finding_added"] += len(record.diff.added_findings)
        per_field["finding_removed"] += len(record.diff.removed_findings)
        per_clinician[record.clinician].append(
            correction_reward(record.draft, record.corrected).reward
        )
    stats = {
        "corrections": n,
        "fields_corrected": {
            k: {"count": v, "rate": round(v / n, 4)} for k, v in sorted(per_field.items()) if v
        },
        "clinicians": {
            k: {
                "corrections": len(v),
                "mean_reward": round(sum(v) / len(v), 4),
                "min_reward": round(min(v), 4),
            }
            for k, v in sorted(per_clinician.items())
        },
    }
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"corrections: {n}")
    typer.echo("field                      corrected  rate")
    for k, v in stats["fields_corrected"].items():
        typer.echo(f"{k:26s} {v['count']:9d}  {v['rate']:.3f}")
    typer.echo("clinician                  corrections  mean reward of drafts")
    for k, v in stats["clinicians"].items():
        typer.echo(f"{k:26s} {v['corrections']:11d}  {v['mean_reward']:.3f}")


@app.command("reward-model")
def reward_model(
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    out: Path = out_option("Folder for the reward model (safetensors + config)."),
    epochs: int = typer.Option(30, "--epochs"),
    heldout_fraction: float = typer.Option(0.2, "--heldout-fraction"),
    seed: int = seed_option(),
) -> None:
    """Train the learned reward model (trl RewardTrainer) on the log's (signed, draft) pairs."""
    from rl.reward_model import train_reward_model

    if not 0.05 <= heldout_fraction <= 0.5:
        raise ConfigError("--heldout-fraction must be between 0.05 and 0.5")
    result = train_reward_model(
        list(existing_log(db).corrections()), out, heldout_fraction, epochs, seed
    )
    typer.echo(json.dumps(result, indent=2))
