"""Study commands: inspect what a study holds, ingest a DICOM folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.errors import ConfigError


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    from reportgen.io.dicom_headers import CT_PHASE_WORDS

    ct = summary.get("modality") == "CT"
    table = Table(title=f"Study {summary['study_id']} ({summary['form']}, {summary['modality']})")
    named = any(info.get("named_because") for info in summary["sequences"].values())
    columns = ["phase" if ct else "sequence", "shape", "spacing (mm)", "orientation"]
    columns += ["range (HU)" if ct else "intensity range"] + (["named because"] if named else [])
    for col in columns:
        table.add_column(col)
    for name, info in summary["sequences"].items():
        orient = info["orientation"] + (" oblique" if info["oblique"] else "")
        lo, hi = info["range"]
        row = [
            f"{name} ({CT_PHASE_WORDS[name]})" if ct else name,
            "x".join(map(str, info["shape"])),
            " x ".join(f"{s:g}" for s in info["spacing_mm"]),
            orient,
            f"{lo:.4g} .. {hi:.4g}",
        ]
        table.add_row(*row, *([info.get("named_because") or ""] if named else []))
    console.print(table)
    console.print(f"missing: {', '.join(summary['missing']) or 'none'}")
    mask = summary["lesion_mask"]
    mask_text = "none" if mask is None else f"{len(mask['labels'])} label(s)"
    console.print(f"lesion mask: {mask_text}")
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")


@app.command()
def inspect(
    study: Path = typer.Argument(..., help="Study folder, 3D/4D NIfTI file or DICOM folder."),
    sequence: str = typer.Option(
        None, "--sequence", help="Name the sequence of a single 3D file (e.g. T2W)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    prepared: bool = typer.Option(
        False, "--prepared", help="Also show the model-grid result of preprocessing."
    ),
) -> None:
    """Show what a study holds: sequences, grids, orientation, what is missing."""
    from reportgen.io import load_study

    loaded = load_study(study, sequence=sequence)
    summary = loaded.summary()
    if prepared:
        from reportgen.preprocessing import prepare_study

        ready = prepare_study(loaded)
        summary["prepared"] = {
            "grid_shape": list(ready.grid.shape),
            "grid_spacing_mm": list(ready.grid.spacing),
            "channels": ready.sequences,
            "channel_means": {
                n: round(float(ready.image[i].mean()), 4) for i, n in enumerate(ready.sequences)
            },
        }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
        if prepared:
            typer.echo(f"prepared: {json.dumps(summary['prepared'])}")


def _parse_overrides(values: list[str]) -> dict[int, str]:
    from reportgen.io.sequences import canonical_sequence_name

    overrides: dict[int, str] = {}
    for item in values:
        number, _, name = item.partition("=")
        canonical = canonical_sequence_name(name)
        kind = "DCE" if canonical and canonical.startswith("DCE") else canonical
        if not number.strip().isdigit() or kind is None:
            raise ConfigError(f"--series {item!r}: expected SERIES_NUMBER=T2W|DWI|ADC|DCE")
        overrides[int(number)] = kind
    return overrides


@app.command()
def ingest(
    dicom_dir: Path = typer.Argument(..., help="Folder of DICOM files (any depth)."),
    out: Path = typer.Argument(..., help="New study folder to write (must not exist or be empty)."),
    series: list[str] = typer.Option(
        [], "--series", help="Override naming: SERIES_NUMBER=T2W|DWI|ADC|DCE (repeatable)."
    ),
    study_id: str = typer.Option(
        None, "--study-id", help="Id for the study (default: a hash of its StudyInstanceUID)."
    ),
    all_series: bool = typer.Option(
        False,
        "--all-series",
        help="Write every series that converts, not only what a draft reads "
        "(unread ones as other_series-N).",
    ),
) -> None:
    """Convert a DICOM folder into a de-identified study folder of NIfTI files: the
    series a draft reads (T2W, DWI, ADC, the chosen DCE phases); --all-series for all."""
    from reportgen.errors import InputError
    from reportgen.io.ingest import ingest_dicom

    if not dicom_dir.is_dir():
        raise InputError(dicom_dir, "not a folder")
    result = ingest_dicom(dicom_dir, out, _parse_overrides(series), study_id, all_series)
    for stem, reason in result["files"].items():
        typer.echo(f"{stem}: {reason}")
    for item in result["skipped_series"]:
        typer.echo(f"skipped series {item['series_number']}: {item['reason']}", err=True)
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {len(result['files'])} volume(s) to {out}")
