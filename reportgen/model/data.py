"""Training examples: each study's cached image arrays and its structured report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reportgen.data import CachedStudies, GridConfig, build_cache, discover_studies
from reportgen.errors import InputError
from reportgen.report.io import read_report
from reportgen.report.schema import Report

REPORT_FILE = "report.json"


@dataclass
class ReportExamples:
    study_ids: list[str]
    reports: list[Report]
    images: CachedStudies
    truth: list[dict]  # synthetic ground truth beyond the report (pathology), {} otherwise
    sources: list[Path] = field(default_factory=list)  # each study as stored (its own grids)


def load_examples(
    data: Path,
    cfg: GridConfig,
    cache_dir: Path,
    template_id: str | None = None,
    progress=None,
    limit: int = 0,
) -> ReportExamples:
    """Studies under `data` that have a report.json (a synth dataset or study folders);
    with `limit`, the first `limit` of them (a labelled few of a larger pool)."""
    kept, reports = [], []
    for source in discover_studies(data):
        if not (source.path.is_dir() and (source.path / REPORT_FILE).is_file()):
            continue
        report = read_report(source.path / REPORT_FILE)
        if template_id and report.template.id != template_id:
            continue
        kept.append(source)
        reports.append(report)
        if limit and len(kept) == limit:
            break
    if not kept:
        raise InputError(
            data,
            "no study has a report.json" + (f" for template {template_id}" if template_id else ""),
        )
    templates = {r.template.id for r in reports}
    if len(templates) > 1:
        raise InputError(
            data, f"reports use several templates {sorted(templates)}; pass --template"
        )
    files = build_cache(kept, cfg, cache_dir, progress=progress)
    return ReportExamples(
        study_ids=[s.study_id for s in kept],
        reports=reports,
        images=CachedStudies(files),
        truth=[s.truth for s in kept],
        sources=[s.path for s in kept],
    )
