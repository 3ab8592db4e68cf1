"""Every bundled model drafts, byte for byte, what it drafted when the golden files were
written (tests/helpers/golden.py says how and when to rewrite them): a refactor of the
model wing that changes a draft, an outline or a body-region reading fails here."""

from __future__ import annotations

import difflib

from helpers.golden import GOLDEN, draft_records


def test_every_bundled_model_drafts_its_golden_reports(tmp_path):
    records = draft_records(tmp_path)
    stored = {p.name for p in GOLDEN.glob("*.json")}
    assert stored == set(records), sorted(stored ^ set(records))
    for name, text in records.items():
        golden = (GOLDEN / name).read_text(encoding="utf-8")
        if text != golden:
            diff = "".join(
                list(
                    difflib.unified_diff(
                        golden.splitlines(True), text.splitlines(True), name, "now", n=2
                    )
                )[:40]
            )
            raise AssertionError(f"{name} changed:\n{diff}")
