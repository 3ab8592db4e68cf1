"""A report leaving the program: one place that knows the output formats and writes them.

`reportgen generate`, `render` and `demo` all go through here, so a format means the
same everywhere and a written file always ends with a newline and is never half-written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reportgen.errors import ConfigError
from reportgen.io import Study
from reportgen.io.write import check_writable, replaced_privately
from reportgen.render.html import print_pdf, render_html
from reportgen.render.text import render_text
from reportgen.report.schema import Report
from reportgen.report.template import Template

if TYPE_CHECKING:
    from pydicom import Dataset

TEXT_FORMATS = ("json", "text", "fhir", "html")
# Written to a file only: a PDF, and the formats that live in the source study (built from
# the report and the DICOM images it was drafted from).
DICOM_FORMATS = ("dicom-sr", "dicom-seg")
FILE_FORMATS = ("pdf", *DICOM_FORMATS)
FORMATS = (*TEXT_FORMATS, *FILE_FORMATS)
LANGUAGES = ("en", "zh")
SUFFIX = {
    "json": ".json",
    "text": ".txt",
    "fhir": ".fhir.json",
    "html": ".html",
    "pdf": ".pdf",
    "dicom-sr": ".sr.dcm",
    "dicom-seg": ".seg.dcm",
}


def check_output(fmt: str, lang: str, out: Path | None = None, from_study: bool = True) -> None:
    """Refuse an unknown format or language, a file format with nowhere to go, or an `out`
    that cannot be written, before any work is done."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if lang not in LANGUAGES:
        raise ConfigError(f"--lang must be en or zh, not {lang!r}")
    if fmt in DICOM_FORMATS and not from_study:
        raise ConfigError(
            f"--format {fmt} needs the DICOM images the report describes: use "
            f"`reportgen generate DICOM_FOLDER --format {fmt} --out FILE.dcm`"
        )
    if fmt in FILE_FORMATS and out is None:
        raise ConfigError(f"--format {fmt} writes a file: pass --out FILE{SUFFIX[fmt]}")
    if out is not None:
        check_writable(out, is_folder=out.is_dir())


def format_report(
    report: Report,
    fmt: str,
    lang: str = "en",
    template: Template | None = None,
    study: Study | None = None,
) -> str:
    """The report as canonical JSON, narrative text (en/zh), a FHIR R4 bundle or a printable
    HTML page (with key images when the `study` is given)."""
    if fmt in FILE_FORMATS:
        check_output(fmt, lang, from_study=fmt not in DICOM_FORMATS)
        raise ConfigError(f"--format {fmt} writes a file: pass --out FILE{SUFFIX[fmt]}")
    check_output(fmt, lang)
    if fmt == "json":
        return report.to_json()
    if fmt == "text":
        return render_text(report, lang, template)
    if fmt == "html":
        return render_html(report, lang, template, study)
    from reportgen.render.fhir import to_fhir_bundle  # fhir.resources: only for FHIR output

    return to_fhir_bundle(report).model_dump_json(indent=2, exclude_none=True)


def write_report(
    path: Path,
    report: Report,
    fmt: str,
    lang: str = "en",
    template: Template | None = None,
    source: list[Dataset] | None = None,
    outlines: list[np.ndarray | None] | None = None,
    grid_affine: np.ndarray | None = None,
    study: Study | None = None,
) -> None:
    """Write `report` to `path` in `fmt`. A DICOM SR or SEG is built in the study of
    `source` (the headers of the images the report was drafted from); a SEG from the
    draft's `outlines` on the model grid `grid_affine`; HTML and PDF show key images of
    `study` when given."""
    if fmt == "dicom-sr":
        from reportgen.render.dicom_sr import build_sr

        _write_dicom(path, build_sr(report, source or [], template))
    elif fmt == "dicom-seg":
        from reportgen.render.dicom_seg import build_seg

        if grid_affine is None or outlines is None:
            raise ConfigError("this draft carries no outlines to write as a DICOM SEG")
        _write_dicom(path, build_seg(report, outlines, grid_affine, source or [], template))
    elif fmt == "pdf":
        print_pdf(render_html(report, lang, template, study), path)
    else:
        write_text(path, format_report(report, fmt, lang, template, study))


def _write_dicom(path: Path, ds: Dataset) -> None:
    """Write atomically and privately, as `write_text` does: a PACS must never receive half
    a file."""
    with replaced_privately(path) as part:
        ds.save_as(part, enforce_file_format=True)


def write_text(path: Path, text: str) -> None:
    """Write atomically (a temporary file renamed over the target), 0600, newline-terminated."""
    with replaced_privately(path) as part:
        part.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
