"""`reportgen train | train-reader | train-pancreas-reader | train-crop-reader | train-gate | train-region |
generate | evaluate | calibrate | similar`: the models' commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import command_from, out_option, template_option
from reportgen.errors import ConfigError, InputError
from reportgen.model.train_args import (
    CropReaderTrainArgs,
    FieldTrainArgs,
    GateTrainArgs,
    OutlinePretrainArgs,
    PancreasTrainArgs,
    RegionTrainArgs,
    ReportTrainArgs,
)


@app.command()
@command_from(ReportTrainArgs)
def train(args: ReportTrainArgs) -> None:
    """Train the report model (cross-attention decoder over the MAE encoder)."""
    from reportgen.model.config import FREEZE_MODES, PRESETS
    from reportgen.model.training import train_report_model

    if args.config not in PRESETS:
        raise ConfigError(f"unknown config {args.config!r}; choose one of {sorted(PRESETS)}")
    if args.freeze is not None and args.freeze not in FREEZE_MODES:
        raise ConfigError(f"--freeze must be one of {FREEZE_MODES}, not {args.freeze!r}")
    if args.steps < 1 or args.batch_size < 1:
        raise ConfigError("--steps and --batch-size must be at least 1")
    train_report_model(args, log=typer.echo)


@app.command("train-reader")
@command_from(FieldTrainArgs)
def train_reader(args: FieldTrainArgs) -> None:
    """Train a staging reader (FIGO templates): it outlines the tumour and reads each criterion."""
    from reportgen.model.field_training import train_field_reader

    if args.epochs < 1 or args.batch_size < 1 or args.limit < 0:
        raise ConfigError("--epochs and --batch-size must be at least 1, --limit at least 0")
    if not 0.0 <= args.rare_share < 1.0:
        raise ConfigError(f"--rare-share must be in [0, 1), got {args.rare_share}")
    summary = train_field_reader(args, log=typer.echo)
    typer.echo(
        f"reader for {summary['template']} written to {args.out} "
        f"(held-back field accuracy {summary['best_val_field_acc']:.3f})"
    )


@app.command("train-pancreas-reader")
@command_from(PancreasTrainArgs)
def train_pancreas_reader(args: PancreasTrainArgs) -> None:
    """Train the pancreas CT reader: a coarse outline of the abdomen and a fine one of the
    pancreas and its vessels, read by the template's stated rules."""
    from reportgen.model.pancreas_training import train_pancreas_reader as fit

    if min(args.coarse_epochs, args.fine_steps, args.batch_size) < 1 or args.limit < 0:
        raise ConfigError(
            "--coarse-epochs, --fine-steps and --batch-size must be at least 1, --limit at least 0"
        )
    if not 0.0 <= args.lesion_share <= 1.0 or not 0.0 <= args.phase_dropout < 1.0:
        raise ConfigError("--lesion-share must be in [0, 1] and --phase-dropout in [0, 1)")
    summary = fit(args, log=typer.echo)
    typer.echo(
        f"pancreas reader written to {args.out} (held-back Dice {summary['held_back_dice']})"
    )


@app.command("train-crop-reader")
@command_from(CropReaderTrainArgs)
def train_crop_reader(args: CropReaderTrainArgs) -> None:
    """Fit the breast crop reader on lesion views: each lesion outlined and measured at the
    acquisition's own resolution, its descriptors read by boosted trees (put it in a
    report model's crop_reader/ folder)."""
    from reportgen.model.crop_reader_training import train_crop_reader_from_views
    from reportgen.synth.acquisition import PROTOCOLS

    if (
        args.cases < 1
        or args.iterations < 1
        or min(args.heldout_cases, args.calibration_cases, args.nme_cases) < 0
    ):
        raise ConfigError(
            "--cases and --iterations must be at least 1, --heldout-cases, "
            "--calibration-cases and --nme-cases at least 0"
        )
    if args.protocol not in PROTOCOLS:
        raise ConfigError(
            f"unknown --protocol {args.protocol!r}; choose from {', '.join(PROTOCOLS)}"
        )
    train_crop_reader_from_views(args, log=typer.echo)


@app.command("train-gate")
@command_from(GateTrainArgs)
def train_gate(args: GateTrainArgs) -> None:
    """Fit a crop reader's gate (is a lesion at a proposal's centre?) on proposals of whole
    clinical phantom studies, found at the acquisition's own resolution; written into the
    reader, which then decides a clinical-resolution study's lesions."""
    from reportgen.model.gate_training import train_gate as fit

    if args.studies < 1 or args.iterations < 1 or not 0.0 < args.threshold < 1.0:
        raise ConfigError(
            "--studies and --iterations must be at least 1 and --threshold within (0, 1)"
        )
    if not (args.reader / "config.json").is_file():
        raise InputError(str(args.reader), "is not a crop reader folder (train-crop-reader)")
    fit(args)


@app.command("pretrain-reader")
@command_from(OutlinePretrainArgs)
def pretrain_reader(args: OutlinePretrainArgs) -> None:
    """Masked-image pretraining of a staging reader's encoder-decoder (random or lesion-aware
    masking), for `train-reader --init-from`."""
    from reportgen.model.outline_pretraining import pretrain_outline

    if args.epochs < 1 or args.batch_size < 1 or not 0.0 < args.mask_ratio < 1.0:
        raise ConfigError("--epochs and --batch-size must be at least 1, --mask-ratio in (0, 1)")
    summary = pretrain_outline(args, log=typer.echo)
    typer.echo(
        f"pretrained outline ({args.masking} masking) written to {args.out} "
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
    template: str = template_option(
        "Draft with the bundled model for this template (birads_mri, figo_cervix_2018, "
        "...); default: the one the study's anatomy (tag, else image) calls for."
    ),
    fmt: str = typer.Option(
        "json",
        "--format",
        help="json | text | fhir | html | pdf | dicom-sr | dicom-seg (pdf and DICOM: to --out; "
        "DICOM: from a DICOM study)",
    ),
    lang: str = typer.Option("en", "--lang", help="en | zh (text)."),
    out: Path = out_option("Write the report here (default: stdout).", default=None),
    sequence: str = typer.Option(None, "--sequence", help="Name of a single 3D NIfTI's sequence."),
    beams: int = typer.Option(1, "--beams", help="Beam search width (1: greedy)."),
    explain: bool = typer.Option(
        True, "--explain/--no-explain", help="Heat maps, boxes, sequence contributions."
    ),
    force: bool = typer.Option(
        False, "--force", help="Draft a study of another body region (with a warning)."
    ),
    indication: str = typer.Option(
        None, "--indication", help="Why the study was done (one study; stated in the report)."
    ),
    study_date: str = typer.Option(
        None,
        "--study-date",
        help="The day the study was done, YYYY-MM-DD (one study; a DICOM study's own "
        "StudyDate otherwise).",
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
    if indication is not None:
        from reportgen.report.schema import clean_indication

        try:
            indication = clean_indication(indication)
        except ValueError as exc:
            raise ConfigError(f"--indication: {exc}") from exc
    if study_date is not None:
        from reportgen.report.schema import clean_study_date

        try:
            study_date = clean_study_date(study_date)
        except ValueError as exc:
            raise ConfigError(f"--study-date: {exc}") from exc
    choose = GeneratorChoice(model, template)  # named, else by each study's anatomy
    if is_batch(study):
        if indication is not None or study_date is not None:
            raise ConfigError(
                "--indication and --study-date describe one study; draft a folder without them"
            )
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
    if indication is not None:
        report.study.indication = indication
    if study_date is not None:
        report.study.study_date = study_date
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
def ask(
    study: Path = typer.Argument(
        ..., help="Study (as for generate), or a report JSON a model drafted before."
    ),
    question: str = typer.Argument(
        ..., help='A closed-ended question, e.g. "Is the SMA involved?"'
    ),
    lang: str = typer.Option(None, "--lang", help="en | zh (default: the question's language)."),
    model: Path = typer.Option(None, "--model", help="Model directory (as for generate)."),
    template: str = template_option("Draft with the bundled model for this template."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    force: bool = typer.Option(
        False, "--force", help="Draft a study of another body region (with a warning)."
    ),
) -> None:
    """Answer a closed-ended question from the model's reading of a study: the answer, its
    probability, the template field it rests on and the finding's evidence. A question
    outside what the template reads is refused (exit 2) with what can be asked."""
    import json

    from ontology.parser import detect_language
    from reportgen import NOT_FOR_CLINICAL_USE
    from reportgen.report.ask import Asker

    if not question.strip():
        raise ConfigError("the question is empty")
    lang = lang or detect_language(question)
    if lang not in ("en", "zh"):
        raise ConfigError(f"unknown --lang {lang!r}; use en or zh")
    if study.is_file() and study.suffix == ".json":
        from reportgen.report.io import read_report

        report = read_report(study)
    else:
        from reportgen.model.drafting import draft_study
        from reportgen.model.generate import GenerateOptions
        from reportgen.model.generators import GeneratorChoice

        checked = draft_study(
            study, GeneratorChoice(model, template), GenerateOptions(explain=False), force
        )
        for message in checked.warnings:
            typer.echo(f"warning: {message}", err=True)
        report = checked.draft.report
    answer = Asker(report).answer(question, lang)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        extra = [f"probability {answer.probability:.2f}"] if answer.probability is not None else []
        extra += [f"field {answer.field_id}"] if answer.field_id else []
        extra += [f"finding {e['finding']}" for e in answer.evidence]
        typer.echo(answer.text + (f"  [{'; '.join(extra)}]" if extra else ""))
    typer.echo(NOT_FOR_CLINICAL_USE, err=True)
    if answer.status == "refused":
        raise typer.Exit(2)


@app.command()
def evaluate(
    data: Path = typer.Option(..., "--data", help="Held-out studies with report.json."),
    model: Path = typer.Option(
        None, "--model", help="Model directory (default: the bundled demo model)."
    ),
    out: Path = out_option(
        "Folder for metrics JSON, table, confusion PNGs.", default=Path("evaluation")
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
def calibrate(
    data: Path = typer.Option(
        ..., "--data", help="Held-out calibration studies with report.json (not the test set)."
    ),
    model: Path = typer.Option(..., "--model", help="Model directory; calibration.json goes here."),
    out: Path = out_option(
        "Folder for the raw drafts' evaluation and the fit's summary.",
        default=Path("calibration"),
    ),
    limit: int = typer.Option(0, "--limit", help="Use only the first N studies (0: all)."),
) -> None:
    """Calibrate a model's per-value confidence on held-out studies (isotonic, per field),
    so that values below its threshold are marked for the reader to check."""
    from reportgen.model.calibration_fit import calibrate_model

    if not (model / "config.json").is_file():
        raise InputError(model, "is not a model folder (no config.json)")
    result = calibrate_model(model, data, out, limit=limit)
    raw = result["raw_on_calibration_studies"]["ece"]
    fitted = result["fitted_on_calibration_studies"]["ece"]
    typer.echo(
        f"calibrated on {result['values']} values: ECE {raw} raw -> {fitted} fitted "
        f"(on the calibration studies; score held-out ones with `reportgen evaluate`); "
        f"values below {result['check_below']} are marked for checking"
    )
    typer.echo(f"written {model / 'calibration.json'}", err=True)


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
@command_from(RegionTrainArgs)
def train_region(args: RegionTrainArgs) -> None:
    """Train the body-region reader: breast or pelvis from the T2W image, and how unusual."""
    from reportgen.model.region_training import train_region_model

    summary = train_region_model(args, log=typer.echo)
    typer.echo(
        f"body-region reader written to {args.out} ({summary['studies']} studies; "
        f"calibration accuracy {summary.get('calibration_accuracy', 'n/a')})"
    )
