"""What every output format must carry beside the report's values: its notice (the
bundled models are trained on synthetic phantoms, not for clinical use) and each
validation problem (a forced draft of another body region, an unusual study, a
contradiction), in one wording, so no format drops one. Each format puts them in its own
standard place (see docs/output_notices.md)."""

from __future__ import annotations

from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.report.schema import Report


def report_notes(report: Report) -> list[str]:
    """The notice first, then every validation problem as "severity: where: message"."""
    problems = report.validation.problems if report.validation else []
    return [
        report.notice or NOT_FOR_CLINICAL_USE,
        *(f"{p.severity}: {p.where}: {p.message}" for p in problems),
    ]
