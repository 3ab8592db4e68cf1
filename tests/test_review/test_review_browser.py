"""A real browser (Debian's Chromium via Playwright) signs in, corrects and signs a draft
that `reportgen generate` wrote, and the correction is read back from the database."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from helpers.browser import chromium_or_skip, drafted_breast_study, open_first_draft
from helpers.review import PASSWORD
from helpers.server import ReviewServer

from reportgen.review.store import RewardLog

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def complete_added_finding(page, rounds: int = 6) -> None:
    """Fill what live validation lists as missing, as a clinician would, until none is.

    Which fields are required depends on values already chosen (a mass asks for shape
    and margin), so this answers the validation list round by round.
    """
    missing = re.compile(r"findings\[0\]\.(\w+): required but missing")
    for _ in range(rounds):
        page.wait_for_timeout(600)  # live validation is debounced
        texts = page.locator("#problems li").all_inner_texts()
        fields = [m.group(1) for t in texts if (m := missing.search(t))]
        if not fields:
            return
        for field in fields:
            control = page.locator(f"#finding-1-{field}")
            if control.evaluate("el => el.tagName") == "SELECT":
                values = control.locator("option").evaluate_all("els => els.map(e => e.value)")
                control.select_option(next(v for v in values if v))
            else:
                control.fill("12")
            control.dispatch_event("change")
    raise AssertionError(f"the added finding still misses fields after {rounds} rounds")


def test_clinician_corrects_and_signs_a_generated_draft_in_chromium(cli, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from reportgen.synth import SynthOptions

    executable = chromium_or_skip()
    studies = tmp_path / "studies"
    draft = drafted_breast_study(
        cli,
        studies,
        SynthOptions(protocol="low_resolution", domain="breast", seed=77, malignant_fraction=1.0),
    )
    db = str(tmp_path / "log.db")
    RewardLog(db).accounts.add("alice", "Dr Alice", PASSWORD)
    server = ReviewServer(db, studies, tmp_path / "server.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=executable,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-3d-apis",  # no WebGL: the page keeps its server-rendered slices
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(60_000)  # CI machines are shared; generous, not timed
            expect.set_options(timeout=60_000)
            open_first_draft(page, server.url, "alice", PASSWORD)
            expect(page.locator("#problems li").first).to_be_visible()
            # two corrections: the first finding's size and the breast composition
            old_size = draft.findings[0].fields["size_mm"].value if draft.findings else None
            if draft.findings:
                page.fill("#finding-1-size_mm", str(int(old_size) + 4))
                page.locator("#finding-1-size_mm").dispatch_event("change")
            else:  # the model missed the lesion: the clinician adds and completes a finding
                page.click("#add-finding")
                complete_added_finding(page)
            # a size out of range first (its preview lists the problem), then the right one
            # saved at once, before its preview answers: the click must reach the server
            size = page.locator("#finding-1-size_mm")
            wanted = size.input_value()
            size.fill("100000")
            size.dispatch_event("change")
            expect(page.locator("#problems")).to_contain_text("size_mm")
            size.fill(wanted)
            size.dispatch_event("change")
            page.click("#save", force=True)  # as a person clicks: no waiting for the button
            expect(page.locator("#message")).to_contain_text("Saved (version 1)")
            fgt = page.locator("#field-fgt_amount")
            options = [
                o for o in fgt.locator("option").evaluate_all("els => els.map(e => e.value)") if o
            ]
            new_fgt = next(o for o in options if o != draft.fields["fgt_amount"].value)
            fgt.select_option(new_fgt)
            expect(page.locator("#slice-image")).to_have_attribute(
                "src", re.compile(r"slice\.png\?seq=")
            )
            assert (
                page.locator("#slice-image").evaluate("img => img.complete && img.naturalWidth") > 0
            )
            assert page.locator("#slice-image").is_visible()
            assert not page.locator("#volume-viewer").is_visible()
            page.wait_for_timeout(600)  # live validation (debounced)
            shot = os.environ.get("REPORTGEN_SCREENSHOT")
            page.screenshot(path=shot or str(tmp_path / "review.png"), full_page=True)
            asked = []
            page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
            page.click("#sign")  # signing asks for the attestation first
            expect(page.locator("#message")).to_contain_text("Signed")
            assert asked and "I sign it as Dr Alice" in asked[0]
            browser.close()
    finally:
        server.kill()
        shutil.copy(tmp_path / "server.log", tmp_path / "server.kept.log")
    [record] = list(RewardLog(db).corrections())
    changed = {c.field: (c.before, c.after) for c in record.diff.changes}
    assert changed["fgt_amount"] == (draft.fields["fgt_amount"].value, new_fgt)
    if old_size is not None:
        assert changed["size_mm"] == (old_size, int(old_size) + 4)
    else:
        assert len(record.corrected.findings) == 1
    assert record.clinician == "alice" and record.draft.provenance.source == "model"
