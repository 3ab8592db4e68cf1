"""`reportgen demo`: the main job on the embedded default, with nothing to download."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import out_option
from reportgen.errors import ConfigError


@app.command()
def demo(
    out: Path = out_option(
        "Keep the example study here (default: a temporary folder).", default=None
    ),
    domain: str = typer.Option(
        "breast",
        "--domain",
        help="breast | cervix | endometrium | ovary | pancreas (the bundled model for it).",
    ),
) -> None:
    """Run the main job on the bundled example: draft a report with the bundled demo model."""
    from reportgen import NOT_FOR_CLINICAL_USE
    from reportgen.data import read_manifest
    from reportgen.io import load_study
    from reportgen.model.generate import GenerateOptions
    from reportgen.model.generators import open_generator
    from reportgen.render import render_text
    from reportgen.render.output import format_report, write_text
    from reportgen.synth import SynthOptions, synth_dataset
    from reportgen.synth.generate import DOMAINS

    if domain not in DOMAINS:
        raise ConfigError(f"unknown --domain {domain!r}; choose from {', '.join(DOMAINS)}")
    generator = open_generator(template=DOMAINS[domain])  # refuses a domain with no model
    folder = out or Path(tempfile.mkdtemp(prefix="reportgen-demo-"))
    manifest = synth_dataset(
        folder, 1, SynthOptions(domain=domain, seed=2026, malignant_fraction=1.0), workers=1
    )
    row = read_manifest(manifest)[0]
    study = load_study(folder / row["dir"])
    typer.echo(f"example study: {folder / row['dir']} ({', '.join(study.sequences)})")
    draft = generator.draft(study, GenerateOptions(explain=True, explain_dir=folder / "evidence"))
    report_path = folder / "draft_report.json"
    write_text(report_path, format_report(draft.report, "json"))
    typer.echo(f"\nDrafted report (bundled {generator.template.id} model):\n")
    typer.echo(render_text(draft.report, "en", generator.template))
    typer.echo("\nGround truth of the phantom:\n")
    typer.echo(row["text"]["en"])
    typer.echo(
        f"\nstructured draft: {report_path} (valid: {draft.report.validation.valid}); evidence: {folder / 'evidence'}"
    )
    typer.echo(NOT_FOR_CLINICAL_USE)
