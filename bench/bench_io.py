"""What bench scripts share: their JSON result on disk (for the README) and on stdout, and
the test helpers (simulated clinicians, load clients) that live outside the installed
packages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

TEST_HELPERS = Path(__file__).resolve().parent.parent / "tests"


def use_test_helpers() -> None:
    """Make `helpers.*` (tests/helpers) importable, as it is under pytest."""
    if str(TEST_HELPERS) not in sys.path:
        sys.path.insert(0, str(TEST_HELPERS))


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
