"""Debian's Chromium for the browser tests: there, or skip (fail where CI requires it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"


def chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{CHROMIUM} is missing but CI requires the browser test")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")
