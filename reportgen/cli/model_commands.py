"""`reportgen train | train-reader | train-region | generate | evaluate | similar`: the models' commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.errors import ConfigError, InputError


@app.command()
def train(
    data: Path = typer.Option(
        ..., "--data", help="Studies with report.json (e.g. a synth dataset)."
    ),
    encoder: Path = typer.Option(..., "--encoder", help="A `reportgen pretrain` output folder."),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    config: str = typer.Option("base", "--config", help="tiny | base | large (decoder size)."),
    template: str = typer.Option(None, "--template", help="Only reports of this template."),
    steps: int = typer.Option(1500, "--steps"),
    batch_size: int = typer.Option(16, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    freeze: str = typer.Option(None, "--freeze", help="frozen | partial | full encoder."),
    sequence_dropout: float = typer.Option(None, "--sequence-dropout"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every"),
    roi: bool = typer.Option(
        True,
        "--roi/--no-roi",
        help="Lesion-centred reading: a detector plus zoomed crops of its candidates.",
    ),
    evidence: bool = typer.Option(
        True,
        "--evidence/--no-evidence",
        help="Outline and measure each candidate (size, position, signal) for the decoder.",
    ),
    copy_values: bool = typer.Option(
        True,
        "--copy/--no-copy",
        help="A pointer-generator head copies the measured side, clock face and size.",
    ),
    detector_steps: int = typer.Option(400, "--detector-steps"),
    segmenter_steps: int = typer.Option(600, "--segmenter-steps"),
    detector_from: Path = typer.Option(
        None, "--detector-from", help="Reuse the detector of this model directory (ablations)."
    ),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last."),
    cache_dir: Path = typer.Option(
        None, "--cache-dir", help="Preprocessed-study cache (e.g. the pretraining run's)."
    ),
) -> None:
    """Train the report model (cross-attention decoder over the MAE encoder)."""
    from reportgen.model.config import FREEZE_MODES, PRESETS
    from reportgen.model.training import ReportTrainArgs, train_report_model

    if config not in PRESETS:
        raise ConfigError(f"unknown config {config!r}; choose one of {sorted(PRESETS)}")
    if freeze is not None and freeze not in FREEZE_MODES:
        raise ConfigError(f"--freeze must be one of {FREEZE_MODES}, not {freeze!r}")
    if steps < 1 or batch_size < 1:
        raise ConfigError("--steps and --batch-size must be at least 1")
    train_report_model(
        ReportTrainArgs(
            data=data,
            encoder=encoder,
            out=out,
            config=config,
            template=template,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            freeze=freeze,
            sequence_dropout=sequence_dropout,
            checkpoint_every=checkpoint_every,
            roi=roi,
            evidence=evidence,
            copy_values=copy_values,
            detector_steps=detector_steps,
            segmenter_steps=segmenter_steps,
            detector_from=detector_from,
            seed=seed,
            resume=resume,
            cache_dir=cache_dir,
        ),
        log=typer.echo,
    )


@app.command("train-reader")
def train_reader(
    data: Path = typer.Option(
        ..., "--data", help="Studies with report.json and lesion_mask (e.g. a synth dataset)."
    ),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    template: str = typer.Option(None, "--template", help="Only reports of this template."),
    config: str = typer.Option("base", "--config", help="tiny | base (reader size)."),
    epochs: int = typer.Option(16, "--epochs"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Preprocessed-study cache."),
    outline_from: Path = typer.Option(
        None, "--outline-from", help="Reuse this reader's trained outline; refit the reading."
    ),
    reading: str = typer.Option(
        "trees",
        "--reading",
        help="How criteria are read: trees (boosted, on the measured geometry) or linear.",
    ),
    augment: bool = typer.Option(
        True,
        "--augment/--no-augment",
        help="Vary gain, contrast, bias, noise and slice thickness while training the outline.",
    ),
    small_parts: bool = typer.Option(
        True,
        "--small-parts/--no-small-parts",
        help="Weigh small outlined parts (deposits, implants, nodes) up in the outline's loss "
        "and measure the parts apart from the primary.",
    ),
    present_dice: bool = typer.Option(
        False,
        "--present-dice/--all-class-dice",
        help="Average the outline's Dice over the classes each batch holds only (for a "
        "class most studies lack, such as peritoneal implants).",
    ),
    rare_share: float = typer.Option(
        0.0,
        "--rare-share",
        help="Share of each outline epoch drawn from studies holding an outline class "
        "fewer than a fifth of them hold (O-RADS peritoneal implants); 0: each study once.",
    ),
    outline_parts: bool = typer.Option(
        True,
        "--outline-parts/--no-outline-parts",
        help="Outline what the masks label beyond tumour as classes of their own (a "
        "lesion's solid tissue, a dilated ureter).",
    ),
    augment_reading: bool = typer.Option(
        False,
        "--augment-reading/--no-augment-reading",
        help="Fit the reading also on an acquisition-varied copy of each training study "
        "(outlined and measured afresh), so it learns how measures move on another scanner.",
    ),
    init_from: Path = typer.Option(
        None, "--init-from", help="A pretrain-reader folder: the outline's encoder starts from it."
    ),
    init_decoder: bool = typer.Option(
        True,
        "--init-decoder/--init-encoder-only",
        help="From --init-from, start the decoder too, or the encoder only.",
    ),
    limit: int = typer.Option(0, "--limit", help="Train on the first N studies only (0: all)."),
) -> None:
    """Train a staging reader (FIGO templates): it outlines the tumour and reads each criterion."""
    from reportgen.model.field_training import FieldTrainArgs, train_field_reader

    if epochs < 1 or batch_size < 1 or limit < 0:
        raise ConfigError("--epochs and --batch-size must be at least 1, --limit at least 0")
    if not 0.0 <= rare_share < 1.0:
        raise ConfigError(f"--rare-share must be in [0, 1), got {rare_share}")
    summary = train_field_reader(
        FieldTrainArgs(
            data=data,
            out=out,
            template=template,
            config=config,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            cache_dir=cache_dir,
            outline_from=outline_from,
            reading=reading,
            augment=augment,
            small_parts=small_parts,
            present_dice=present_dice,
            rare_share=rare_share,
            outline_parts=outline_parts,
            augment_reading=augment_reading,
            init_from=init_from,
            init_decoder=init_decoder,
            limit=limit,
        ),
        log=typer.echo,
    )
    typer.echo(
        f"reader for {summary['template']} written to {out} "
        f"(held-back field accuracy {summary['best_val_field_acc']:.3f})"
    )


@app.command("pretrain-reader")
def pretrain_reader(
    data: Path = typer.Option(..., "--data", help="Studies (their images only; masks as prior)."),
    out: Path = typer.Option(..., "--out", help="Folder to write (for train-reader --init-from)."),
    masking: str = typer.Option(
        "random", "--masking", help="random | lesion (lesion cores hidden more, borders kept)."
    ),
    mask_ratio: float = typer.Option(0.6, "--mask-ratio", help="Share of patches hidden."),
    prior_from: Path = typer.Option(
        None,
        "--prior-from",
        help="Lesion masking: this reader's outline is the prior (default: the truth masks).",
    ),
    template: str = typer.Option(None, "--template", help="Only studies of this template."),
    config: str = typer.Option("base", "--config", help="tiny | base (reader size)."),
    epochs: int = typer.Option(8, "--epochs"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Preprocessed-study cache."),
) -> None:
    """Masked-image pretraining of a staging reader's encoder-decoder (random or lesion-aware
    masking), for `train-reader --init-from`."""
    from reportgen.model.outline_pretraining import OutlinePretrainArgs, pretrain_outline

    if epochs < 1 or batch_size < 1 or not 0.0 < mask_ratio < 1.0:
        raise ConfigError("--epochs and --batch-size must be at least 1, --mask-ratio in (0, 1)")
    summary = pretrain_outline(
        OutlinePretrainArgs(
            data=data,
            out=out,
            masking=masking,
            mask_ratio=mask_ratio,
            prior_from=prior_from,
            template=template,
            config=config,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            cache_dir=cache_dir,
        ),
        log=typer.echo,
    )
    typer.echo(
        f"pretrained outline ({masking} masking) written to {out} "
        f"(last loss {summary['history'][-1]['loss']:.4f})"
    )


@app.command()
def generate(
    study: Path = typer.Argument(
        ...,
        help="Study: NIfTI/NRRD/MetaImage file, study folder, DICOM folder; or a folder of "
        "studies (with --out FOLDER).",
    ),
    model: Path = typer.Option(
        None, "--model", help="Model directory (default: the bundled model for --template)."
    ),
    template: str = typer.Option(
        None,
        "--template",
        help="Draft with the bundled model for this template (birads_mri, figo_cervix_2018, "
        "...); default: the one the study's anatomy (tag, else image) calls for.",
    ),
    fmt: str = typer.Option(
        "json",
        "--format",
        help="json | text | fhir | html | pdf | dicom-sr | dicom-seg (pdf and DICOM: to --out; "
        "DICOM: from a DICOM study)",
    ),
    lang: str = typer.Option("en", "--lang", help="en | zh (text)."),
    out: Path = typer.Option(None, "--out", help="Write the report here (default: stdout)."),
    sequence: str = typer.Option(None, "--sequence", help="Name of a single 3D NIfTI's sequence."),
    beams: int = typer.Option(1, "--beams", help="Beam search width (1: greedy)."),
    explain: bool = typer.Option(
        True, "--explain/--no-explain", help="Heat maps, boxes, sequence contributions."
    ),
    force: bool = typer.Option(
        False, "--force", help="Draft a study of another body region (with a warning)."
    ),
) -> None:
    """Draft a structured report for a study (template-constrained, valid by construction)."""
    from reportgen import NOT_FOR_CLINICAL_USE
    from reportgen.cli.batch_generate import generate_batch, is_batch, print_summary
    from reportgen.model.drafting import draft_study
    from reportgen.model.generate import GenerateOptions
    from reportgen.model.generators import GeneratorChoice
    from reportgen.render.output import DICOM_FORMATS, check_output, format_report, write_report

    check_output(fmt, lang, out)  # also refuses an `out` that cannot be written
    if beams < 1:
        raise ConfigError("--beams must be at least 1")
    choose = GeneratorChoice(model, template)  # named, else by each study's anatomy
    if is_batch(study):
        if out is None:
            raise ConfigError("a folder of studies needs --out FOLDER for the drafts")
        options = GenerateOptions(num_beams=beams, explain=explain)
        outcomes = generate_batch(study, out, choose, fmt, lang, options, force)
        print_summary(outcomes)
        typer.echo(NOT_FOR_CLINICAL_USE, err=True)
        if any(o.status != "drafted" for o in outcomes):
            raise typer.Exit(1)
        return
    explain_dir = (out.parent / f"{out.stem}_evidence") if (out and explain) else None
    options = GenerateOptions(num_beams=beams, explain=explain, explain_dir=explain_dir)
    checked = draft_study(
        study, choose, options, force, sequence=sequence, with_headers=fmt in DICOM_FORMATS
    )
    draft, generator, report = checked.draft, checked.generator, checked.draft.report
    loaded, source = checked.study, checked.source
    for message in checked.warnings:
        typer.echo(f"warning: {message}", err=True)
    if out:
        write_report(
            out,
            report,
            fmt,
            lang,
            generator.template,
            source,
            draft.outlines,
            draft.grid_affine,
            study=loaded,
        )
        typer.echo(
            f"report written to {out} ({generator.template.id}; valid: {report.validation.valid})",
            err=True,
        )
    else:
        typer.echo(format_report(report, fmt, lang, generator.template, loaded))
    typer.echo(NOT_FOR_CLINICAL_USE, err=True)


@app.command()
def evaluate(
    data: Path = typer.Option(..., "--data", help="Held-out studies with report.json."),
    model: Path = typer.Option(
        None, "--model", help="Model directory (default: the bundled demo model)."
    ),
    out: Path = typer.Option(
        Path("evaluation"), "--out", help="Folder for metrics JSON, table, confusion PNGs."
    ),
    subsets: str = typer.Option(
        "all", "--subsets", help="Sequence subsets: all, or e.g. all,no_dce,no_diffusion,t2_only."
    ),
    baselines: bool = typer.Option(
        True, "--baselines/--no-baselines", help="Also score retrieval and unconstrained decoding."
    ),
    train_data: Path = typer.Option(
        None, "--train-data", help="Training studies (the retrieval baseline's library)."
    ),
    limit: int = typer.Option(0, "--limit", help="Score only the first N studies (0: all)."),
    cache_dir: Path = typer.Option(
        None, "--cache-dir", help="Keep prepared studies here (default: under --out, removed)."
    ),
) -> None:
    """Score a model on held-out studies: fields, stage/assessment, size, AUROC, IoU, text."""
    from reportgen.model.evaluate import SUBSETS, evaluate_model

    names = [s.strip() for s in subsets.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUBSETS]
    if unknown:
        raise ConfigError(f"unknown subset(s) {unknown}; choose from {sorted(SUBSETS)}")
    result = evaluate_model(
        data,
        model,
        out,
        names,
        baselines=baselines,
        train_data=train_data,
        limit=limit,
        cache_dir=cache_dir,
    )
    typer.echo((out / "evaluation.md").read_text())
    typer.echo(f"metrics written to {out / 'evaluation.json'}", err=True)
    if not result:
        raise InputError(data, "nothing was evaluated")


@app.command()
def similar(
    study: Path = typer.Argument(..., help="The study to match."),
    library: Path = typer.Option(..., "--library", help="Folder of prior studies to search."),
    model: Path = typer.Option(
        None, "--model", help="Model directory (default: the bundled demo model)."
    ),
    top: int = typer.Option(5, "--top"),
) -> None:
    """The most similar prior studies, by the model's contrastive image embedding."""
    from reportgen.model.similar import most_similar

    if top < 1:
        raise ConfigError("--top must be at least 1")
    for row in most_similar(study, library, model, top):
        typer.echo(json.dumps(row))


@app.command("train-region")
def train_region(
    data: list[Path] = typer.Option(
        ..., "--data", help="Studies with report.json; repeat for each domain (breast, pelvis)."
    ),
    calibration: list[Path] = typer.Option(
        None, "--calibration", help="Held-out studies that set the 'unusual study' threshold."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write the body-region reader to."),
    epochs: int = typer.Option(30, "--epochs"),
    seed: int = typer.Option(0, "--seed"),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Preprocessed-study cache."),
) -> None:
    """Train the body-region reader: breast or pelvis from the T2W image, and how unusual."""
    from reportgen.model.region_training import RegionTrainArgs, train_region_model

    summary = train_region_model(
        RegionTrainArgs(
            data=list(data),
            out=out,
            calibration=list(calibration or []),
            epochs=epochs,
            seed=seed,
            cache_dir=cache_dir,
        ),
        log=typer.echo,
    )
    typer.echo(
        f"body-region reader written to {out} ({summary['studies']} studies; "
        f"calibration accuracy {summary.get('calibration_accuracy', 'n/a')})"
    )
