"""How long `reportgen generate` takes to refuse a big DICOM study of another region.

Builds a study as a prostate mpMRI archive export looks: 90 series, one of them a
70-phase dynamic, every file tagged BodyPartExamined PROSTATE (64 x 64 x 24 per volume,
about 4,300 files), then times the whole command (a fresh process, imports included)
refusing it. Prints and writes JSON.

    python bench/refuse_from_headers.py [--series 90] [--phases 70]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_io import scratch_dir, use_test_helpers, write_result

use_test_helpers()
from helpers.dicom_factory import write_series  # noqa: E402

SHAPE = (64, 64, 24)


def build(root: Path, series: int, phases: int) -> int:
    tagged = {"BodyPartExamined": "PROSTATE"}
    volume = np.full(SHAPE, 200, np.int16)
    for number in range(1, series):
        description = "t2_tse_tra" if number == 1 else f"series_{number}"
        write_series(root / f"s{number}", volume, description=description, series_number=number,
                     extra=tagged)  # fmt: skip
    for t in range(phases):  # one dynamic series, phase after phase
        write_series(
            root / "dynamic", volume, description="fl3d_vibe_dynamic", series_number=series,
            series_uid="1.2.826.0.1.3680043.8.498.4242", instance_offset=t * SHAPE[2],
            extra={**tagged, "TemporalPositionIdentifier": t + 1, "FlipAngle": 12,
                   "AcquisitionTime": f"12{(10 * t) // 60:02d}{(10 * t) % 60:02d}.000"},
        )  # fmt: skip
    return sum(1 for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=90)
    parser.add_argument("--phases", type=int, default=70)
    parser.add_argument("--out", type=Path, default=Path("bench/results/refuse_from_headers.json"))
    args = parser.parse_args()
    root = scratch_dir("reportgen-refuse-") / "study"
    files = build(root, args.series, args.phases)
    command = [sys.executable, "-m", "reportgen.cli", "generate", str(root), "--no-explain"]
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    write_result(
        args.out,
        {
            "series": args.series,
            "dynamic_phases": args.phases,
            "files": files,
            "exit_code": run.returncode,
            "message": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "",
            "seconds": round(seconds, 1),
            "command": "reportgen generate STUDY --no-explain",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        },
    )


if __name__ == "__main__":
    main()
