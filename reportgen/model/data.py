"""Training examples: each study's cached image arrays and its structured report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pretrain_mae.config import MAEConfig
from pretrain_mae.data import CachedStudies, build_cache, discover_studies
from reportgen.errors import InputError
from reportgen.report.schema import Report


@dataclass
class ReportExamples:
    study_ids: list[str]
    reports: list[Report]
    images: CachedStudies
    truth: list[dict]  # synthetic ground truth beyond the report (pathology), {} otherwise


def read_study_report(folder: Path) -> Report | None:
    path = folder / "report.json"
    if not path.is_file():
        return None
    try:
        return Report.from_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(
            path, f"not a reportgen.report/1 document: {str(exc).splitlines()[0]}"
        ) from exc


def load_examples(
    data: Path, cfg: MAEConfig, cache_dir: Path, template_id: str | None = None, progress=None
) -> ReportExamples:
    """Studies under `data` that have a report.json (a synth dataset or study folders)."""
    sources = discover_studies(data)
    truth_by_id: dict[str, dict] = {}
    manifest = data / "manifest.jsonl"
    if manifest.exists():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                truth_by_id[row["id"]] = row.get("truth", {})
    kept, reports = [], []
    for source in sources:
        report = read_study_report(source.path) if source.path.is_dir() else None
        if report is None:
            continue
        if template_id and report.template.id != template_id:
            continue
        kept.append(source)
        reports.append(report)
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
        truth=[truth_by_id.get(s.study_id, {}) for s in kept],
    )
