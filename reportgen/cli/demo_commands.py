"""`reportgen demo`: the main job on the embedded default, with nothing to download."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from reportgen.cli import app


@app.command()
def demo(
    out: Path = typer.Option(
        None, "--out", help="Keep the example study here (default: a temporary folder)."
    ),
) -> None:
    """Run the main job on the bundled example: synthesise a study and show what is read."""
    from reportgen import NOT_FOR_CLINICAL_USE
    from reportgen.cli.study_commands import _print_summary
    from reportgen.io import load_study
    from reportgen.synth import SynthOptions, synth_dataset

    folder = out or Path(tempfile.mkdtemp(prefix="reportgen-demo-"))
    manifest = synth_dataset(
        folder, 1, SynthOptions(domain="breast", seed=2026, malignant_fraction=1.0), workers=1
    )
    row = __import__("json").loads(manifest.read_text().splitlines()[0])
    study = load_study(folder / row["dir"])
    _print_summary(study.summary())
    typer.echo("\nGround-truth report (free text, English):\n")
    typer.echo(row["text"]["en"])
    typer.echo(f"\n{NOT_FOR_CLINICAL_USE}")
