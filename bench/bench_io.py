"""What bench scripts share: their JSON result on disk (for the README) and on stdout, and
the test helpers (simulated clinicians, load clients) that live outside the installed
packages."""

from __future__ import annotations

import atexit
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

TEST_HELPERS = Path(__file__).resolve().parent.parent / "tests"


def use_test_helpers() -> None:
    """Make `helpers.*` (tests/helpers) importable, as it is under pytest."""
    if str(TEST_HELPERS) not in sys.path:
        sys.path.insert(0, str(TEST_HELPERS))


def scratch_dir(prefix: str) -> Path:
    """A temporary work folder removed when the script exits: benchmarks synthesise
    gigabytes of phantoms, and a shared machine's disk must not fill with them."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def wilson(k: int, n: int) -> list[float]:
    """The 95% Wilson score interval of k successes in n (a proportion near 0 or 1 on a
    few studies, where the normal approximation fails)."""
    if n == 0:
        return [0.0, 1.0]
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 3), round(centre + half, 3)]
