"""What bench scripts share: their JSON result on disk (for the README) and on stdout, and
the test helpers (simulated clinicians, load clients) that live outside the installed
packages."""

from __future__ import annotations

import atexit
import json
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
