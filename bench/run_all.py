"""`make bench`: the benchmarks that finish in minutes on 2 cores, one after another.

The long ones (MAE probe, demo-model reproduction) are run on their own; see docs/architecture.md.
"""

from __future__ import annotations

import subprocess
import sys

BENCHES = [
    ["bench/synth_speed.py", "--n", "200"],
    ["bench/parser_f1.py", "--n", "200", "--seed", "9001"],
    ["bench/mae_throughput.py", "--steps", "20"],
    ["bench/generate_latency.py"],
    ["bench/review_load.py", "--seconds", "60"],
]


def main() -> int:
    failed = []
    for bench in BENCHES:
        print(f"== {' '.join(bench)}", flush=True)
        if subprocess.call([sys.executable, *bench]) != 0:
            failed.append(bench[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
