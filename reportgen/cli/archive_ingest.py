"""`reportgen ingest-archive`: a hospital's export of many studies, each with its report.

An export holds one folder per study (DICOM files at any depth) and, beside the images,
the study's free-text report as `report.txt`. Each study is ingested (de-identified
NIfTI, `reportgen ingest`) into a folder named by its pseudonymous id, and its report is
parsed into `report.json` there (structured values only: the free text, which may name
the patient, is never copied). The result is a folder of study folders that
`pretrain`, `train`, `train-reader` and `evaluate` read as they read phantoms.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import template_option
from reportgen.errors import InputError, ReportgenError

REPORT_TEXT = "report.txt"


@dataclass
class Ingested:
    source: str  # the export's sub-folder name: shown on the terminal, never written out
    study_id: str | None
    status: str  # "ingested" | "ingested without report" | "refused"
    detail: str


def study_folders(archive: Path) -> list[Path]:
    """The export's sub-folders that hold any file (one study each)."""
    if not archive.is_dir():
        raise InputError(archive, "not a folder")
    folders = [p for p in sorted(archive.iterdir()) if p.is_dir() and any(p.rglob("*"))]
    if not folders:
        raise InputError(archive, "holds no study folders (one sub-folder per study)")
    return folders


def ingest_one(folder: Path, out: Path, template: str | None, lang: str | None) -> Ingested:
    """Ingest one study and parse its report; nothing is left behind if it fails."""
    from reportgen.io.ingest import ingest_dicom
    from reportgen.report.parse import parse_report

    staging = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out))
    shutil.rmtree(staging)  # ingest_dicom writes a new folder at this path
    try:
        summary = ingest_dicom(folder, staging)
        study_id = summary["study_id"]
        target = out / study_id
        if target.exists():
            raise InputError(target, "this study was already ingested (same StudyInstanceUID)")
        detail = f"{len(summary['files'])} volume(s)"
        status = "ingested without report"
        text_path = folder / REPORT_TEXT
        if template and text_path.is_file():
            report = parse_report(text_path.read_text(encoding="utf-8"), template, lang, study_id)
            (staging / "report.json").write_text(report.to_json())
            status = "ingested"
            detail += f", report parsed ({len(report.findings)} finding(s))"
        staging.rename(target)
        return Ingested(folder.name, study_id, status, detail)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@app.command("ingest-archive")
def ingest_archive(
    archive: Path = typer.Argument(..., help="Export with one sub-folder per study."),
    out: Path = typer.Argument(..., help="Folder to write one study folder per study into."),
    template: str = template_option("Parse each study's report.txt with this template."),
    lang: str = typer.Option(None, "--lang", help="en or zh (default: detected per report)."),
) -> None:
    """Ingest a DICOM export of many studies, each report.txt parsed into report.json."""
    from tqdm.auto import tqdm

    from reportgen.cli.batch_generate import print_summary
    from reportgen.report import load_template

    if template:
        load_template(template)  # an unknown template is refused before any work
    folders = study_folders(archive)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for folder in tqdm(folders, desc="ingest", unit="study"):
        try:
            outcomes.append(ingest_one(folder, out, template, lang))
        except ReportgenError as exc:
            outcomes.append(Ingested(folder.name, None, "refused", str(exc)))
    print_summary(outcomes, ("folder", "study id", "result", "detail"))
    if any(o.status == "refused" for o in outcomes):
        raise typer.Exit(1)
