"""Golden drafts: what every bundled model writes for a fixed set of phantoms, kept
byte for byte, so a change to the model wing that should not change a draft is seen
not to (issue 36: "byte-identical before and after"). Each draft is stored as its
report JSON (creation time fixed), the SHA-256 of each finding's outline on the input
grid, and the body-region reading the fitness check made.

Regenerate only when a change is meant to alter drafts, and say so in the commit:

    PYTHONPATH=tests .venv/bin/python -m helpers.golden --write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
# (phantom domain, bundled template, synth seed, phantoms): none of these seeds trains
# or validates a bundled model.
CASES = (
    ("breast", "birads_mri", 36001, 3),
    ("cervix", "figo_cervix_2018", 36002, 2),
    ("endometrium", "figo_endometrium_2023", 36003, 2),
    ("ovary", "orads_mri", 36004, 2),
)
FIXED_TIME = "2026-01-01T00:00:00+00:00"


def _outline_digest(mask: np.ndarray | None) -> str:
    if mask is None:
        return "none"
    mask = np.ascontiguousarray(mask, dtype=bool)
    return f"{mask.shape} {hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()}"


def draft_records(work: Path) -> dict[str, str]:
    """File name -> the text stored for it, for every case's phantoms."""
    from reportgen.data import read_manifest
    from reportgen.io import Study, load_study
    from reportgen.model.drafting import draft_checked
    from reportgen.model.fitness import study_anatomy
    from reportgen.model.generate import GenerateOptions
    from reportgen.model.generators import GeneratorChoice
    from reportgen.synth import SynthOptions, synth_dataset

    records: dict[str, str] = {}
    for domain, template, seed, n in CASES:
        root = work / domain
        synth_dataset(
            root, n, SynthOptions(protocol="low_resolution", domain=domain, seed=seed), workers=1
        )
        choice = GeneratorChoice(None, template)
        studies = [load_study(root / row["dir"]) for row in read_manifest(root)]
        if domain == "breast":  # and a study without contrast: what the grammar hides
            first = studies[0]
            plain = {k: v for k, v in first.sequences.items() if not k.startswith("DCE")}
            studies.append(Study(first.study_id, plain, first.source, first.form))
        for i, study in enumerate(studies):
            draft = draft_checked(study, choice, GenerateOptions(explain=False), False).draft
            report = draft.report
            report.provenance.created_at = FIXED_TIME
            name = f"{template}-{i}"
            records[f"{name}.report.json"] = report.to_json() + "\n"
            reading = study_anatomy(study).reading
            extra = {
                "outlines": [_outline_digest(m) for m in draft.outlines],
                "grid_affine": None
                if draft.grid_affine is None
                else np.asarray(draft.grid_affine).round(6).tolist(),
                "body_region": None
                if reading is None
                else {
                    "region": reading.region,
                    "probability": reading.probability,
                    # as the fitness check words it: its 4th decimal varies with the CPU
                    "distance": round(reading.distance, 1),
                },
            }
            records[f"{name}.extra.json"] = json.dumps(extra, indent=2) + "\n"
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the golden files")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        records = draft_records(Path(tmp))
    if args.write:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.json"):
            old.unlink()
        for name, text in records.items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
        print(f"wrote {len(records)} golden files to {GOLDEN}")
        return 0
    changed = [
        n
        for n, t in records.items()
        if not (GOLDEN / n).is_file() or (GOLDEN / n).read_text(encoding="utf-8") != t
    ]
    print("\n".join(changed) or "all golden drafts unchanged")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
