"""`reportgen generate DIR_OF_STUDIES --out OUTDIR`: every study drafted or refused, in one process.

The model loads once; each study is read, drafted and written on its own, so one bad
study is refused with its reason and the others still get their drafts. A summary table
and `summary.json` say what happened to each; the exit status is 1 if any study got no
draft.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from reportgen.errors import InputError, ReportgenError

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    source: str  # relative to the input folder
    study_id: str | None
    status: str  # drafted | refused | failed
    detail: str  # the file written, or why not


def is_batch(folder: Path) -> bool:
    """A folder of studies (a manifest, sub-folders that are NIfTI study folders, or
    sub-folders of more than one DICOM study), not one study folder (images directly
    inside) or one DICOM study (its series in sub-folders)."""
    from reportgen.io.sequences import is_image_file

    if not folder.is_dir():
        return False
    if (folder / "manifest.jsonl").exists():
        return True
    children = list(folder.iterdir())
    if any(p.is_file() and is_image_file(p) for p in children):
        return False
    if any(c.is_dir() and any(is_image_file(p) for p in c.iterdir()) for c in children):
        return True
    return len(set(_dicom_studies(folder).values())) > 1


def _dicom_studies(folder: Path) -> dict[Path, str]:
    """Sub-folders holding DICOM, each with the StudyInstanceUID of its first file."""
    from reportgen.io.dicom import first_study_uid

    found = {c: first_study_uid(c) for c in sorted(folder.iterdir()) if c.is_dir()}
    return {c: uid for c, uid in found.items() if uid}


def batch_sources(folder: Path) -> list:
    """The studies of a batch: a manifest's rows, else every entry of the folder (DICOM
    studies, NIfTI study folders and files, and whatever else is there, an empty folder
    included), so each gets its line in the summary, drafted or refused with why."""
    from reportgen.data.sources import StudySource, discover_studies

    if (folder / "manifest.jsonl").exists():
        return discover_studies(folder)
    return [StudySource(c.name, c) for c in sorted(folder.iterdir()) if not c.name.startswith(".")]


def generate_batch(
    folder: Path, out_dir: Path, choose, fmt: str, lang: str, options, force: bool = False
) -> list:
    """Draft every study under `folder` into `out_dir` with the generator `choose` gives
    for its anatomy (`GeneratorChoice`); `force` drafts misfits with the warning, as for
    one study. Returns one `Outcome` per entry of the folder."""
    from tqdm.auto import tqdm

    from reportgen.model.drafting import draft_study
    from reportgen.render.output import DICOM_FORMATS, SUFFIX, write_report, write_text

    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "--out must be a folder when drafting a folder of studies")
    sources = batch_sources(folder)
    outcomes: list[Outcome] = []
    seen: set[str] = set()
    for source in tqdm(sources, desc="generate", unit="study"):
        where = str(source.path.relative_to(folder))
        try:

            def admit(study, path=source.path) -> None:
                if study.study_id in seen:
                    raise InputError(path, f"study id {study.study_id!r} was already drafted")
                seen.add(study.study_id)

            checked = draft_study(  # a misfit: refused, or drafted with the warning
                source.path,
                choose,
                options,
                force,
                with_headers=fmt in DICOM_FORMATS,
                admit=admit,
                evidence_dir=lambda s: (
                    out_dir / f"{s.study_id}_evidence" if options.explain else None
                ),
            )
            draft, generator, study = checked.draft, checked.generator, checked.study
            source_images, target = checked.source, out_dir / f"{study.study_id}{SUFFIX[fmt]}"
            write_report(
                target,
                draft.report,
                fmt,
                lang,
                generator.template,
                source_images,
                draft.outlines,
                draft.grid_affine,
                study=study,
            )
            warned = "".join(f"; warning: {message}" for message in checked.warnings)
            outcomes.append(Outcome(where, study.study_id, "drafted", target.name + warned))
        except ReportgenError as exc:
            outcomes.append(Outcome(where, None, "refused", str(exc)))
        except Exception as exc:  # one study's unexpected failure must not stop the rest
            log.exception("study %s failed", where)
            outcomes.append(Outcome(where, None, "failed", f"{type(exc).__name__}: {exc}"))
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "drafted": sum(o.status == "drafted" for o in outcomes),
        "refused": sum(o.status == "refused" for o in outcomes),
        "failed": sum(o.status == "failed" for o in outcomes),
        "studies": [asdict(o) for o in outcomes],
    }
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return outcomes


def print_summary(outcomes, columns=("study", "id", "result", "file or reason")) -> None:
    """One row per study (source, id, status, detail) on stderr: batch generate's and
    ingest-archive's end-of-run table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(outcomes)} studies")
    for column in columns:
        table.add_column(column)
    for o in outcomes:
        table.add_row(o.source, o.study_id or "-", o.status, o.detail)
    Console(stderr=True).print(table)
