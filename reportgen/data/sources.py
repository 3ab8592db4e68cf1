"""Where the studies are: a synth dataset's manifest, or a folder of study folders.

The one reader of `manifest.jsonl` (written by `reportgen synth`); a malformed line is
an InputError naming the line, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from reportgen.errors import InputError
from reportgen.io.sequences import is_image_file

MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class StudySource:
    """A study on disk, with the synthetic truth beyond its report when a manifest has it."""

    study_id: str
    path: Path
    truth: dict = field(default_factory=dict, compare=False, hash=False)


def read_manifest(path: Path) -> list[dict]:
    """Rows of a synth manifest (a folder holding manifest.jsonl, or the file itself)."""
    path = path / MANIFEST if path.is_dir() else path
    if not path.exists():
        raise InputError(path, "no manifest.jsonl here (make one with `reportgen synth`)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"line {number} is not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or "id" not in row or "dir" not in row:
                raise InputError(path, f"line {number} has no study 'id' and 'dir'")
            rows.append(row)
    return rows


def discover_studies(data: Path) -> list[StudySource]:
    """Study folders under `data` (a synth manifest's, or any folder of study folders / NIfTI files)."""
    if not data.is_dir():
        raise InputError(data, "not a folder")
    if (data / MANIFEST).exists():
        return [
            StudySource(row["id"], data / row["dir"], row.get("truth", {}))
            for row in read_manifest(data)
        ]
    sources = []
    for child in sorted(data.iterdir()):
        if child.is_dir() and any(is_image_file(p) for p in child.iterdir()):
            sources.append(StudySource(child.name, child))
        elif child.is_file() and is_image_file(child):
            sources.append(StudySource(child.name.split(".")[0], child))
    if not sources:
        raise InputError(data, "no studies found (study folders, NIfTI files or a manifest.jsonl)")
    return sources
