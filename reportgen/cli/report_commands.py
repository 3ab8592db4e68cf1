"""Report commands: parse free text, validate and render structured reports."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import out_option, template_option
from reportgen.errors import ConfigError, InputError


def _emit(text: str, out: Path | None) -> None:
    from reportgen.render.output import write_text

    if out is None:
        typer.echo(text)
    else:
        write_text(out, text)
        typer.echo(f"wrote {out}", err=True)


def _lang(lang: str) -> str:
    if lang not in ("en", "zh"):
        raise ConfigError(f"--lang must be en or zh, not {lang!r}")
    return lang


@app.command()
def parse(
    report: Path = typer.Argument(..., help="Free-text report (UTF-8 text file)."),
    template: str = template_option(
        "Template id, e.g. birads_mri, figo_cervix_2018.", required=True
    ),
    lang: str = typer.Option(None, "--lang", help="en or zh (default: detected)."),
    out: Path = out_option("Write the JSON here instead of stdout.", default=None),
) -> None:
    """Turn a free-text report into a structured report (JSON), for labelling legacy reports."""
    from reportgen.report import load_template
    from reportgen.report.parse import parse_report

    load_template(template)
    if not report.exists():
        raise InputError(report, "no such file")
    try:
        text = report.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(report, "not UTF-8 text") from exc
    if not text.strip():
        raise InputError(report, "the report is empty")
    result = parse_report(text, template, _lang(lang) if lang else None, study_id=report.stem)
    for problem in result.validation.problems:
        if problem.rule == "other_anatomy":
            typer.echo(f"warning: {problem.message}", err=True)
    _emit(result.to_json(), out)


@app.command()
def validate(
    report: Path = typer.Argument(..., help="Structured report (reportgen.report/1 JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print the validation result as JSON."),
) -> None:
    """Check a report against its schema, template and ontology; exit 0 if valid, 2 if not."""
    from pydantic import ValidationError

    from reportgen.report import Report, validate_report
    from reportgen.report.io import schema_problems
    from reportgen.report.schema import Validation

    if not report.exists():
        raise InputError(report, "no such file")
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
        result = validate_report(Report.model_validate(data))
    except json.JSONDecodeError as exc:
        raise InputError(report, f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except ValidationError as exc:
        result = Validation(valid=False, problems=schema_problems(exc))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        for p in result.problems:
            typer.echo(f"{p.severity}: {p.where}: {p.message}" + (f" [{p.rule}]" if p.rule else ""))
        errors = sum(p.severity == "error" for p in result.problems)
        typer.echo(
            f"{report}: {'valid' if result.valid else 'INVALID'} ({errors} error(s), {len(result.problems) - errors} warning(s))"
        )
    if not result.valid:
        raise typer.Exit(2)


@app.command()
def render(
    report: Path = typer.Argument(..., help="Structured report (reportgen.report/1 JSON)."),
    fmt: str = typer.Option("text", "--format", help="text | json | fhir | html | pdf"),
    lang: str = typer.Option("en", "--lang", help="en or zh (text)."),
    out: Path = out_option("Write here instead of stdout.", default=None),
) -> None:
    """Render a structured report as narrative text, canonical JSON or a FHIR R4 bundle."""
    from reportgen.render.output import check_output, format_report, write_report
    from reportgen.report import revalidate
    from reportgen.report.io import read_report

    check_output(fmt, lang, out, from_study=False)
    loaded = read_report(report)
    loaded.validation = revalidate(loaded)
    if fmt == "pdf":  # a file, never the terminal
        write_report(out, loaded, fmt, lang)
        return
    _emit(format_report(loaded, fmt, lang), out)
