"""What every bench script ends with: its JSON result on disk (for the README) and on stdout."""

from __future__ import annotations

import json
from pathlib import Path


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
