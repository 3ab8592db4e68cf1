"""`reportgen pretrain`: MAE pretraining on unlabelled studies (and the lesion detector)."""

from __future__ import annotations

from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import out_option, seed_option
from reportgen.errors import ConfigError, InputError


@app.command()
def pretrain(
    data: Path = typer.Option(..., "--data", help="Folder of studies (or a synth dataset)."),
    out: Path = out_option("Output folder: checkpoints, TensorBoard logs, final encoder."),
    config: str = typer.Option("base", "--config", help="tiny | base | large"),
    masking: str = typer.Option("lesion", "--masking", help="random | lesion | anatomy"),
    cross: str = typer.Option(
        "independent", "--cross", help="independent | joint | complementary (across sequences)"
    ),
    steps: int = typer.Option(1000, "--steps"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    mask_ratio: float = typer.Option(0.75, "--mask-ratio"),
    keep_core: float = typer.Option(
        0.3,
        "--keep-core",
        help="Lesion masking: relative chance a lesion-core patch stays visible.",
    ),
    keep_border: float = typer.Option(3.0, "--keep-border", help="... a lesion-border patch."),
    keep_background: float = typer.Option(1.0, "--keep-background", help="... a background patch."),
    sequence_dropout: float = typer.Option(
        0.2, "--sequence-dropout", help="Chance each sequence is hidden from a study."
    ),
    experts: bool = typer.Option(
        False, "--experts", help="MOME-style modality experts (an MLP per sequence family)."
    ),
    multiscale: str = typer.Option(
        "", "--multiscale", help="Encoder depths to expose, e.g. 2,4,6."
    ),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32"
    ),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    seed: int = seed_option(),
    checkpoint_every: int = typer.Option(200, "--checkpoint-every"),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from OUT/last exactly where it stopped."
    ),
    stop_at: int = typer.Option(
        None, "--stop-at", help="End this session after this step (resume later)."
    ),
    detector: Path = typer.Option(
        None, "--detector", help="Lesion detector for studies without masks."
    ),
    train_detector: bool = typer.Option(
        False,
        "--train-detector",
        help="Train the lesion detector (on studies with masks) into OUT.",
    ),
    detector_steps: int = typer.Option(200, "--detector-steps"),
) -> None:
    """Pretrain the multi-sequence MAE encoder (lesion-aware masking by default)."""
    from pretrain_mae.masking import MaskingOptions

    if precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"--precision must be auto, bf16 or fp32, not {precision!r}")
    if steps < 1 or batch_size < 1:
        raise ConfigError("--steps and --batch-size must be at least 1")
    if resume and not (out / "last").exists():
        raise InputError(out, "nothing to resume (no 'last' checkpoint here)")
    if not resume and (out / "last").exists():
        raise InputError(
            out, "already holds a run; pass --resume to continue it or choose a new --out"
        )
    try:
        opts = MaskingOptions(
            strategy=masking,
            cross=cross,
            mask_ratio=mask_ratio,
            keep_core=keep_core,
            keep_border=keep_border,
            keep_background=keep_background,
            sequence_dropout=sequence_dropout,
        )
        layers = tuple(int(v) for v in multiscale.split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    from reportgen.model.pretraining import (
        detector_prior,
        study_dataset,
        train_standalone_detector,
    )

    if train_detector:
        from pretrain_mae.config import preset

        stats = train_standalone_detector(
            study_dataset(data, out / "cache")(preset(config)), out, detector_steps, seed
        )
        typer.echo(
            f"lesion detector trained on {stats['trained_on']} studies with masks; saved in {out}"
        )
        return
    from reportgen.model.mae_training import TrainArgs, resolve_config, train

    overrides = {"modality_experts": experts, "mask_ratio": mask_ratio}
    if layers:
        overrides["multiscale_layers"] = layers
    args = TrainArgs(
        out=out,
        source=str(data),
        config=config,
        masking=opts,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        checkpoint_every=checkpoint_every,
        precision=precision,
        compile=compile_model,
        resume=resume,
        stop_at=stop_at,
        model_overrides=overrides,
    )
    try:
        cfg = resolve_config(args)
        prior = detector_prior(detector, cfg) if detector is not None else None
        train(
            args, study_dataset(data, out / "cache"), prior, log=lambda m: typer.echo(m, err=True)
        )
    except InputError:  # already says what is wrong with which file (exit status 2)
        raise
    except ValueError as exc:  # inconsistent config values
        raise ConfigError(str(exc)) from exc
    typer.echo(
        f"pretraining done: encoder in {out} (config.json + model.safetensors); TensorBoard logs in {out / 'tb'}"
    )


def main_torchrun() -> None:  # `python -m reportgen.cli.pretrain_commands ...` under torchrun
    from reportgen.cli import main

    main(["pretrain", *__import__("sys").argv[1:]])


if __name__ == "__main__":
    main_torchrun()
