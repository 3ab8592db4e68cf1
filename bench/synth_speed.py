"""Benchmark: synthetic breast studies per second at the default size (issue: 1,000 < 3 min).

python bench/synth_speed.py [--n 1000] [--workers 0] [--out bench/results/synth_speed.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

from bench_io import scratch_dir, write_result

from reportgen.synth import SynthOptions, synth_dataset
from reportgen.synth.acquisition import DEFAULT_MATRIX, DEFAULT_SPACING


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--domain", default="breast")
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "synth_speed.json"
    )
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    folder = scratch_dir("reportgen-bench-")
    try:
        start = time.perf_counter()
        synth_dataset(
            folder / "data",
            args.n,
            SynthOptions(protocol="low_resolution", domain=args.domain, seed=123),
            workers=workers,
        )
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (folder / "data").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        "benchmark": "synth_speed",
        "command": f"python bench/synth_speed.py --n {args.n} --domain {args.domain}",
        "domain": args.domain,
        "studies": args.n,
        "seconds": round(seconds, 1),
        "studies_per_second": round(args.n / seconds, 2),
        "seconds_per_1000_studies": round(seconds / args.n * 1000, 1),
        "target_seconds_per_1000": 180,
        "default_matrix": list(DEFAULT_MATRIX),
        "default_spacing_mm": list(DEFAULT_SPACING[args.domain]),
        "sequences_per_study": 7,
        "megabytes_per_study": round(size / args.n / 1e6, 2),
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
