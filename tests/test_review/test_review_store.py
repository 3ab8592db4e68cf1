"""The reward log on SQLite and PostgreSQL: append-only, versioned saves, corrections, export."""

from __future__ import annotations

import threading

import pytest
from conftest import assert_refused
from helpers.review import PASSWORD, make_db, studies_with_draft
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from reportgen.errors import ConfigError
from reportgen.report import load_template
from reportgen.report.correction import CorrectionRecord
from reportgen.review.forms import form_values, report_from_form
from reportgen.review.store import Conflict, RewardLog, integrity_problems
from reportgen.review.store.log import RefusedEdit

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def setup(request, tmp_path):
    store = RewardLog(make_db(request.param, tmp_path))
    _root, draft, truth = studies_with_draft(tmp_path / "studies")
    draft_id, new = store.add_draft(draft, study_path=truth.study.study_id, source_path="d.json")
    assert new and store.add_draft(draft)[1] is False  # idempotent by content
    alice = store.accounts.add("alice", "Dr Alice", PASSWORD)
    bob = store.accounts.add("bob", "Dr Bob", PASSWORD)
    yield store, draft_id, draft, truth, alice, bob
    store.close()


def edit(draft, clinician_id, **finding_changes):
    template = load_template(draft.template.id)
    values = form_values(draft)
    values["findings"][0].update(finding_changes)
    return report_from_form(template, draft, values, clinician_id)[0]


def test_versioned_saves_refuse_stale_edits_and_keep_both_sides(setup):
    store, draft_id, draft, _, alice, bob = setup
    assert store.save(draft_id, alice, 0, edit(draft, alice, size_mm=30)) == 1
    with pytest.raises(Conflict, match="saved by Dr Alice"):  # her other tab, still at 0
        store.save(draft_id, alice, 0, edit(draft, alice, size_mm=31))
    assert store.revision_numbers(draft_id) == [1]
    store.accounts.set_role("bob", "admin")  # only an admin may take over her draft
    assert store.save(draft_id, bob, 1, edit(draft, bob, size_mm=31), override=True) == 2
    state = store.state(draft_id)
    assert state.version == 2 and state.status == "in review"
    assert state.current.findings[0].fields["size_mm"].value == 31
    assert (
        state.draft.findings[0].fields["size_mm"].value == draft.findings[0].fields["size_mm"].value
    )


def test_a_value_the_template_forbids_is_refused_and_nothing_is_stored(setup):
    store, draft_id, draft, _, alice, _ = setup
    before = store.audit_trail()
    forbidden = edit(draft, alice)  # past the form, which offers only allowed values
    margin = forbidden.findings[0].fields["margin"]
    forbidden.findings[0].fields["margin"] = margin.model_copy(update={"value": "shape_round"})
    with pytest.raises(RefusedEdit, match="not allowed"):
        store.save(draft_id, alice, 0, forbidden)
    with pytest.raises(RefusedEdit, match="outside the allowed range"):
        store.save(draft_id, alice, 0, edit(draft, alice, size_mm=5000))
    forged = edit(draft, alice)  # a signature only signing adds
    forged.provenance.signed_by, forged.provenance.signed_at = "Dr Alice", "2026-01-01T00:00:00"
    with pytest.raises(RefusedEdit, match="cannot carry a signature"):
        store.save(draft_id, alice, 0, forged)
    assert store.revision_numbers(draft_id) == [] and store.audit_trail() == before


def test_signing_stores_the_correction_with_its_field_diff_and_export_writes_it(setup, tmp_path):
    store, draft_id, draft, truth, alice, bob = setup
    store.open(draft_id, alice)
    corrected = edit(
        draft,
        alice,
        size_mm=truth.findings[0].fields["size_mm"].value,
        margin=truth.findings[0].fields["margin"].value,
    )
    store.sign(draft_id, alice, 0, corrected)
    with pytest.raises(Conflict, match="signed by Dr Alice"):
        store.save(draft_id, bob, 1, corrected)
    [record] = list(store.corrections())
    changed = {c.field: (c.before, c.after) for c in record.diff.changes}
    assert changed["size_mm"] == (
        draft.findings[0].fields["size_mm"].value,
        truth.findings[0].fields["size_mm"].value,
    )
    assert changed["margin"][1] == truth.findings[0].fields["margin"].value
    assert record.clinician == "alice" and record.time_spent_s >= 0
    assert record.draft.provenance.source == "model"
    assert record.corrected.provenance.clinician_id == str(alice)
    out = tmp_path / "corrections.jsonl"
    assert store.export_corrections(out) == 1
    assert CorrectionRecord.from_json_line(out.read_text().splitlines()[0]) == record
    actions = [e["action"] for e in store.audit_trail()]
    assert actions[-2:] == ["sign", "export"]


def test_the_database_refuses_updates_and_deletes_of_the_log(setup):
    store, draft_id, draft, _, alice, _ = setup
    store.save(draft_id, alice, 0, edit(draft, alice, size_mm=30))
    for statement in (
        "UPDATE revisions SET report_json = '{}'",
        "DELETE FROM revisions",
        "DELETE FROM audit_events",
        "UPDATE drafts SET report_json = '{}'",
    ):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert store.revision_numbers(draft_id) == [1]
    assert integrity_problems(store.engine) == []


def test_concurrent_saves_never_lose_or_duplicate_a_revision(setup):
    store, draft_id, draft, _, alice, _ = setup
    acknowledged: list[int] = []
    lock = threading.Lock()

    def worker(clinician_id: int, size: int) -> None:
        for _ in range(6):
            version = store.state(draft_id).version
            try:
                new = store.save(
                    draft_id, clinician_id, version, edit(draft, clinician_id, size_mm=size)
                )
            except Conflict:
                continue
            with lock:
                acknowledged.append(new)

    threads = [  # one clinician in six tabs: the draft is hers alone
        threading.Thread(target=worker, args=(alice, 20 + i)) for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = store.revision_numbers(draft_id)
    assert sorted(acknowledged) == numbers == list(range(1, len(numbers) + 1))


def test_accounts_refuse_bad_names_short_passwords_and_wrong_passwords(setup):
    store, *_ = setup
    with pytest.raises(ConfigError, match="already exists"):
        store.accounts.add("alice", "x", PASSWORD)
    with pytest.raises(ConfigError, match="10-1024 characters"):
        store.accounts.add("carol", "x", "short")
    with pytest.raises(ConfigError, match="username"):
        store.accounts.add("<script>", "x", PASSWORD)
    assert store.accounts.authenticate("alice", "wrong password!") is None
    assert store.accounts.authenticate("nobody", PASSWORD) is None
    assert store.accounts.authenticate("alice", PASSWORD).display_name == "Dr Alice"


def test_cli_users_add_and_corrections_export(cli, tmp_path, monkeypatch):
    import io

    db = tmp_path / "log.db"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    result = cli("users", "add", "alice", "--db", db, "--name", "Dr Alice", "--password-stdin")
    assert result.code == 0, result.err
    assert RewardLog(str(db)).accounts.authenticate("alice", PASSWORD) is not None
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert_refused(cli("users", "add", "alice", "--db", db, "--password-stdin"), "already exists")
    result = cli("corrections", "export", "--db", db, "--out", tmp_path / "c.jsonl")
    assert result.code == 0 and (tmp_path / "c.jsonl").read_text() == ""
    assert_refused(
        cli("corrections", "export", "--db", db, "--out", tmp_path / "nope" / "c.jsonl"),
        "does not exist",
    )
    assert_refused(
        cli("corrections", "export", "--db", "mysql://x/y", "--out", tmp_path / "c.jsonl"),
        "only SQLite",
    )
    assert_refused(
        cli(
            "corrections",
            "export",
            "--db",
            "postgresql://u@127.0.0.1:1/none",
            "--out",
            tmp_path / "c.jsonl",
        ),
        "cannot open",
    )


def test_an_edit_keeps_what_drafting_said_of_the_study(tmp_path):
    """A draft made with --force says so; a clinician's edit, checked again on save,
    must not lose that note (no later output may show the report without it)."""
    from reportgen.report.schema import STUDY_NOTE, Problem

    store = RewardLog(make_db("sqlite", tmp_path))
    _root, draft, truth = studies_with_draft(tmp_path / "studies")
    note = Problem(
        severity="warning",
        where=STUDY_NOTE,
        rule="fitness",
        message="drafted with --force: a pelvis study; this report is not meaningful",
    )
    draft.validation.problems.insert(0, note)
    draft_id, _ = store.add_draft(draft, study_path=truth.study.study_id)
    alice = store.accounts.add("alice", "Dr Alice", PASSWORD)
    assert store.save(draft_id, alice, 0, edit(draft, alice, size_mm=30)) == 1
    assert note in store.state(draft_id).current.validation.problems
    store.close()
