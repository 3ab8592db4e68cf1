"""A report leaving the program: one place that knows the output formats and writes them.

`reportgen generate`, `render` and `demo` all go through here, so a format means the
same everywhere and a written file always ends with a newline and is never half-written.
"""

from __future__ import annotations

import os
from pathlib import Path

from reportgen.errors import ConfigError
from reportgen.render.fhir import to_fhir_bundle
from reportgen.render.text import render_text
from reportgen.report.schema import Report
from reportgen.report.template import Template

FORMATS = ("json", "text", "fhir")
LANGUAGES = ("en", "zh")


def check_output(fmt: str, lang: str) -> None:
    """Refuse an unknown format or language before any work is done."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if lang not in LANGUAGES:
        raise ConfigError(f"--lang must be en or zh, not {lang!r}")


def format_report(
    report: Report, fmt: str, lang: str = "en", template: Template | None = None
) -> str:
    """The report as canonical JSON, narrative text (en/zh) or a FHIR R4 bundle."""
    check_output(fmt, lang)
    if fmt == "json":
        return report.to_json()
    if fmt == "text":
        return render_text(report, lang, template)
    return to_fhir_bundle(report).model_dump_json(indent=2, exclude_none=True)


def write_text(path: Path, text: str) -> None:
    """Write atomically (a temporary file renamed over the target), newline-terminated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.partial")
    part.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(part, path)
