"""What the browser tests share: Debian's Chromium (there, or skip; fail where CI requires
it), a breast phantom with the bundled model's draft, and signing in to open a draft."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reportgen.report import Report

CHROMIUM = "/usr/bin/chromium"


def chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{CHROMIUM} is missing but CI requires the browser test")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")


def drafted_breast_study(cli, studies: Path, options) -> Report:
    """One breast phantom (`SynthOptions`) in `studies` with the bundled model's draft of
    it beside it, where `reportgen review --studies` finds both."""
    from reportgen.synth import synth_dataset

    synth_dataset(studies, 1, options, workers=1)
    study = next(p for p in studies.iterdir() if p.is_dir())
    result = cli("generate", study, "--out", studies / "draft.json")
    assert result.code == 0, result.err
    return Report.from_json((studies / "draft.json").read_text())


def open_first_draft(page, url: str, username: str, password: str) -> None:
    """Sign in as a clinician and open the worklist's first draft."""
    page.goto(f"{url}/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")
    page.click("a.open-draft")
