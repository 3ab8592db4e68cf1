"""Each attack that once broke the review app, reproduced; each must now fail.

Sessions that outlive sign-out, unthrottled and distinguishable sign-ins, a log rewritten
behind the app's back, drafts taken over by another clinician, 500s on bad input, files
others can read, plain-HTTP cookies, drafts imported through symlinks, signatures with no
time spent.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time

import pytest
from conftest import assert_refused
from fastapi.testclient import TestClient
from helpers.review import (
    PASSWORD,
    app_role,
    csrf_from,
    make_db,
    page_data,
    postgres_url,
    sign_in,
    studies_with_draft,
)
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from reportgen.errors import ConfigError
from reportgen.review.app import ReviewSettings, create_app
from reportgen.review.drafts import import_drafts
from reportgen.review.store import RewardLog
from reportgen.review.store.log import BrokenChain
from reportgen.review.throttle import SignInThrottle


def client_for(store, db, root, **settings) -> TestClient:
    return TestClient(create_app(ReviewSettings(db=db, studies=root, **settings), store))


def open_page(client, draft_id=1):
    page = client.get(f"/drafts/{draft_id}")
    assert page.status_code == 200
    return csrf_from(page.text), page_data(page.text)


# -- sessions ---------------------------------------------------------------------------
def test_a_cookie_copied_before_sign_out_is_dead_after_it(env):
    db, store, root, _ = env
    client = client_for(store, db, root)
    assert sign_in(client).status_code == 303
    csrf, page = open_page(client)
    copied = dict(client.cookies)
    client.post("/logout", data={"csrf_token": csrf})
    thief = client_for(store, db, root)
    thief.cookies.update(copied)
    assert thief.get("/api/drafts/1").status_code == 401
    saved = thief.post(
        "/api/drafts/1/revisions",
        json={"version": 0, "report": page["values"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert saved.status_code == 401 and store.revision_numbers(1) == []


def test_ending_a_users_sessions_and_the_idle_timeout_take_effect_at_once(env):
    db, store, root, _ = env
    client = client_for(store, db, root)
    sign_in(client)
    assert client.get("/api/drafts/1").status_code == 200
    alice = store.accounts.by_name("alice")
    assert store.sessions.end_all(alice.id) == 1
    assert client.get("/api/drafts/1").status_code == 401
    sign_in(client)
    store.accounts.set_disabled("alice", True)
    assert client.get("/api/drafts/1").status_code == 401  # disabled: every session dead
    assert sign_in(client).status_code == 401  # and no new one
    store.accounts.set_disabled("alice", False)
    sign_in(client)
    store.sessions.idle_s = 0.0
    assert client.get("/api/drafts/1").status_code == 401


# -- sign-in -----------------------------------------------------------------------------
def test_thirty_wrong_passwords_lock_the_account_out_and_are_audited(env):
    db, store, root, _ = env
    client = client_for(store, db, root)
    # the default policy on a stopped clock: as if all 31 attempts came within a second
    client.app.state.review.throttle = SignInThrottle(clock=lambda: 1000.0)
    statuses = [sign_in(client, "alice", f"wrong password {i}").status_code for i in range(30)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    right = sign_in(client, "alice", PASSWORD)
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1
    assert client.get("/api/drafts/1").status_code == 401
    failed = [e for e in store.audit_trail() if e["action"] == "sign_in_failed"]
    assert len(failed) == 5
    assert failed[0]["detail"] == {"user": "alice", "address": "testclient"}
    other = client_for(store, db, root)  # the same address: locked out for bob too
    other.app.state.review.throttle = client.app.state.review.throttle
    assert sign_in(other, "bob", PASSWORD).status_code == 429


class CountingHasher:
    def __init__(self, real):
        self.real, self.calls = real, []

    def verify(self, stored, password):
        self.calls.append("verify")
        return self.real.verify(stored, password)

    def hash(self, password):
        self.calls.append("hash")
        return self.real.hash(password)


def test_an_unknown_name_costs_exactly_one_argon2_check_like_a_known_one(env):
    _, store, *_ = env
    store.accounts._dummy_hash()  # made once, on first use, not per sign-in
    spy = store.accounts._hasher = CountingHasher(store.accounts._hasher)
    for name in ("alice", "nobody", "root"):
        spy.calls.clear()
        assert store.accounts.authenticate(name, "wrong password!") is None
        assert spy.calls == ["verify"], name
    timings = {}
    for name in ("alice", "nobody"):  # once 391 ms against 778 ms: told apart every time
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            store.accounts.authenticate(name, "wrong password!")
            runs.append(time.perf_counter() - start)
        timings[name] = sorted(runs)[2]
    assert 0.6 < timings["nobody"] / timings["alice"] < 1.6, timings


def test_sign_ins_beyond_the_concurrent_check_limit_get_503_not_a_queue(env):
    db, store, root, _ = env
    client = client_for(store, db, root)
    checks = client.app.state.review.password_checks
    checks.wait_s = 0.05
    held = 0
    while checks.slots.acquire(blocking=False):  # every Argon2 slot busy
        held += 1
    try:
        token = csrf_from(client.get("/login").text)
        busy = client.post(
            "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
        )
    finally:
        for _ in range(held):
            checks.slots.release()
    assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
    assert sign_in(client).status_code == 303


# -- the log -----------------------------------------------------------------------------
def signed_draft(store, truth) -> None:
    from reportgen.report import load_template
    from reportgen.review.forms import form_values, report_from_form

    alice = store.accounts.by_name("alice").id
    state = store.state(1)
    store.open(1, alice)
    report, _ = report_from_form(
        load_template(state.template_id), state.draft, form_values(truth), alice
    )
    store.sign(1, alice, 0, report)


def test_sqlite_insert_or_replace_is_refused_and_a_rewrite_behind_the_apps_back_is_named(
    tmp_path, cli
):
    db = make_db("sqlite", tmp_path)
    root, _, truth = studies_with_draft(tmp_path / "studies")
    store = RewardLog(db)
    import_drafts(store, root)
    store.accounts.add("alice", "Dr Alice", PASSWORD)
    signed_draft(store, truth)
    assert store.verify() == []
    raw = sqlite3.connect(db)
    for statement in (
        "INSERT OR REPLACE INTO signed_reports (id, draft_id, revision_number, report_json, "
        "clinician_id, signed_at) VALUES (1, 1, 1, '{}', 1, '2020-01-01')",
        "INSERT OR REPLACE INTO revisions (draft_id, number, report_json, clinician_id, "
        "created_at) VALUES (1, 1, '{}', 1, '2020-01-01')",
        "INSERT OR REPLACE INTO clinicians (id, username, display_name, password_hash, "
        "created_at) VALUES (1, 'alice', 'x', 'forged', '2020-01-01')",
        "UPDATE studies SET path = '/etc'",
        "DELETE FROM ledger",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute(statement)
    # someone with the file drops the guard and rewrites a signed report
    raw.execute("DROP TRIGGER signed_reports_no_update")
    raw.execute("UPDATE signed_reports SET report_json = '{}' WHERE id = 1")
    raw.execute("DROP TRIGGER audit_events_no_delete")
    raw.execute("DELETE FROM audit_events WHERE action = 'open'")
    raw.commit()
    raw.close()
    problems = store.verify()
    assert "audit_events row 3): the row was deleted" in problems[0]  # the first broken link
    assert "signed_reports row 1): the row was changed" in problems[1]
    result = cli("review", "verify", "--db", db)
    assert result.code == 1 and "signed_reports row 1" in result.out
    with pytest.raises(BrokenChain, match="audit_events row 3"):
        store.export_corrections(tmp_path / "c.jsonl")
    assert not (tmp_path / "c.jsonl").exists()
    assert_refused(cli("review", "--db", db, "--port", "1"), "altered outside the app")


def test_verify_names_a_row_slipped_in_without_a_link(tmp_path, cli):
    db = make_db("sqlite", tmp_path)
    store = RewardLog(db)
    store.accounts.add("alice", "Dr Alice", PASSWORD)
    result = cli("review", "verify", "--db", db)
    assert result.code == 0 and "ok: 4 rows chained" in result.out  # the key link and 3 rows
    raw = sqlite3.connect(db)
    raw.execute("INSERT INTO audit_events (at, action, detail) VALUES ('2020-01-01', 'x', '{}')")
    raw.commit()
    assert "audit_events row 2: not in the chain" in store.verify()[0]


def test_postgres_refuses_truncate_and_the_app_role_owns_nothing(tmp_path, cli):
    if not postgres_url():
        pytest.skip("no PostgreSQL server (set REPORTGEN_TEST_POSTGRES_URL; .ci/run does)")
    owner_url = make_db("postgres", tmp_path)
    root, _, truth = studies_with_draft(tmp_path / "studies")
    _, app_url = app_role(owner_url, cli)
    owner = create_engine(owner_url.replace("postgresql://", "postgresql+psycopg://", 1))
    store = RewardLog(app_url)  # the app, as its own role, can append and read
    import_drafts(store, root)
    store.accounts.add("alice", "Dr Alice", PASSWORD)
    signed_draft(store, truth)
    for statement in (
        "TRUNCATE audit_events CASCADE",
        "TRUNCATE studies CASCADE",
        "DROP TABLE ledger",
        "ALTER TABLE revisions DISABLE TRIGGER ALL",
        "UPDATE signed_reports SET report_json = '{}'",
        "DELETE FROM clinicians",
    ):
        with (
            pytest.raises(DBAPIError, match=r"permission denied|must be owner"),
            store.engine.begin() as connection,
        ):
            connection.execute(text(statement))
    for statement in ("TRUNCATE audit_events CASCADE", "TRUNCATE ledger"):
        with pytest.raises(DBAPIError, match="append-only"), owner.begin() as connection:
            connection.execute(text(statement))
    assert store.verify() == [] and len(list(store.corrections())) == 1
    store.close()
    owner.dispose()


# -- roles and claims --------------------------------------------------------------------
def test_a_draft_another_clinician_opened_is_theirs_unless_an_admin_overrides(env):
    db, store, root, _ = env
    alice, bob, admin = (client_for(store, db, root) for _ in range(3))
    sign_in(alice)
    _, page = open_page(alice)
    assert page["claimed_by_me"]
    sign_in(bob, "bob")
    csrf, page = open_page(bob)
    assert not page["claimed_by_me"] and page["claimed_by"] == "Dr Alice"
    assert "Dr Alice is editing this draft" in bob.get("/drafts/1").text
    body = {"version": 0, "report": page["values"]}
    for attempt in (body, {**body, "override": True}):  # a reviewer cannot override
        refused = bob.post("/api/drafts/1/sign", json=attempt, headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 409 and "Dr Alice" in refused.json()["error"]
    sign_in(admin, "root")
    csrf, page = open_page(admin)
    plain = admin.post("/api/drafts/1/sign", json=body, headers={"X-CSRF-Token": csrf})
    assert plain.status_code == 409  # even an admin must ask for the override
    signed = admin.post(
        "/api/drafts/1/sign", json={**body, "override": True}, headers={"X-CSRF-Token": csrf}
    )
    assert signed.status_code == 200
    override = [e for e in store.audit_trail() if e["action"] == "override"]
    assert len(override) == 1 and override[0]["detail"]["from_clinician"] == 1


def test_account_changes_are_new_rows_and_a_new_password_ends_old_sessions(env, cli):
    db, store, root, _ = env
    client = client_for(store, db, root)
    sign_in(client)
    store.accounts.set_password("alice", "another long password")
    store.sessions.end_all(store.accounts.by_name("alice").id)
    assert client.get("/api/drafts/1").status_code == 401
    assert sign_in(client).status_code == 401
    assert sign_in(client, password="another long password").status_code == 303
    actions = [e["action"] for e in store.audit_trail()]
    assert "password_changed" in actions and store.verify() == []
    with store.engine.connect() as connection:
        hashes = connection.execute(text("SELECT count(*) FROM account_changes")).scalar_one()
    assert hashes == 4  # three roles at creation + one password: nothing overwritten


def test_users_cli_disables_changes_roles_and_refuses_unknown_roles(tmp_path, cli, monkeypatch):
    import io

    db = tmp_path / "log.db"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli("users", "add", "carol", "--db", db, "--password-stdin").code == 0
    assert cli("users", "role", "carol", "admin", "--db", db).code == 0
    assert_refused(cli("users", "role", "carol", "superuser", "--db", db), "role")
    assert cli("users", "disable", "carol", "--db", db).code == 0
    listing = cli("users", "list", "--db", db)
    assert "carol\tadmin\tdisabled" in listing.out
    assert RewardLog(str(db)).accounts.authenticate("carol", PASSWORD) is None
    assert_refused(cli("users", "disable", "nobody", "--db", db), "no user")


# -- bad input ---------------------------------------------------------------------------
def test_bad_input_gets_a_4xx_json_error_with_the_security_headers_never_a_500(env):
    db, store, root, _ = env
    client = client_for(store, db, root)
    sign_in(client)
    csrf, page = open_page(client)
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    form = page["values"]
    size = form["findings"][0]["size_mm"]
    cases = [
        ("GET", "/api/drafts/99999999999999999999999", None, 422),
        ("GET", "/drafts/1/slice.png?seq=T2W&z=99999999999999999999", None, 422),
        ("POST", "/api/drafts/1/revisions", b"[" * 100_000 + b"]" * 100_000, 400),
        ("POST", "/api/drafts/1/revisions", b"[" * 5_000 + b"]" * 5_000, 400),
        ("POST", "/api/drafts/1/revisions", b'{"version": 0, "a": ' * 40 + b"0" + b"}" * 40, 400),
        (
            "POST",
            "/api/drafts/1/revisions",
            f'{{"version": {"9" * 5000}, "report": {{}}}}'.encode(),
            400,
        ),
        (
            "POST",
            "/api/drafts/1/preview",
            f'{{"report": {{"findings": [{{"size_mm": {"9" * 400}}}]}}}}'.encode(),
            400,
        ),
        ("POST", "/api/drafts/1/preview", b'{"report": {"x": 1e999}}', 400),
        ("POST", "/api/drafts/1/revisions", b'{"version": NaN}', 400),
        ("POST", "/api/drafts/1/revisions", b'{"version": 99999999999, "report": {}}', 422),
        ("POST", "/api/drafts/1/revisions", b" " * (10 * 1024 * 1024), 413),
    ]
    for method, path, body, status in cases:
        response = client.request(method, path, content=body, headers=headers)
        assert response.status_code == status, (path, (body or b"")[:40], response.text[:200])
        assert response.headers["x-frame-options"] == "DENY", path
        assert "error" in response.json(), path
    assert store.revision_numbers(1) == [] and size == form["findings"][0]["size_mm"]


def test_an_unexpected_error_is_a_json_500_with_the_security_headers(env, monkeypatch):
    db, store, root, _ = env
    client = client_for(store, db, root)
    sign_in(client)
    monkeypatch.setattr(store, "state", lambda draft_id: 1 / 0)
    response = client.get("/api/drafts/1")
    assert response.status_code == 500 and response.json() == {
        "error": "internal error (logged on the server)"
    }
    assert response.headers["content-security-policy"].startswith("default-src 'self'")


# -- files, TLS, imports, time spent -----------------------------------------------------
def test_the_sqlite_log_and_its_wal_are_private_and_an_open_secret_file_is_refused(tmp_path, cli):
    db = tmp_path / "log.db"
    store = RewardLog(str(db))
    store.accounts.add("alice", "Dr Alice", PASSWORD)
    for item in (db, tmp_path / "log.db-wal"):
        assert stat.S_IMODE(item.stat().st_mode) == 0o600, item
    store.close()
    os.chmod(db, 0o644)
    RewardLog(str(db)).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    secret.chmod(0o644)
    assert_refused(
        cli("review", "--db", db, "--secret-file", secret), "readable by group or others"
    )
    assert_refused(cli("review", "--db", db, "--host", "0.0.0.0"), "--https-only")


def test_https_only_sets_secure_cookies_and_hsts(env):
    db, store, root, _ = env
    client = TestClient(
        create_app(ReviewSettings(db=db, studies=root, https_only=True), store),
        base_url="https://testserver",
    )
    login = client.get("/login")
    assert "secure" in login.headers["set-cookie"].lower()
    assert login.headers["strict-transport-security"].startswith("max-age=")
    plain = client_for(store, db, root).get("/login")
    assert "strict-transport-security" not in plain.headers


def test_a_draft_symlinked_from_outside_the_studies_folder_is_not_imported(tmp_path):
    root, draft, _ = studies_with_draft(tmp_path / "studies")
    outside = tmp_path / "outside"
    outside.mkdir()
    moved = draft.model_copy(deep=True)
    moved.study.study_id = "elsewhere"
    (outside / "elsewhere.draft.json").write_text(moved.to_json())
    (root / "elsewhere.draft.json").symlink_to(outside / "elsewhere.draft.json")
    store = RewardLog(str(tmp_path / "log.db"))
    assert import_drafts(store, root) == (1, 1)
    assert [r.study_id for r in store.worklist()] == [draft.study.study_id]


def test_time_spent_counts_from_the_signers_first_open_and_api_only_signatures_are_marked(env):
    db, store, root, truth = env
    client = client_for(store, db, root)
    from reportgen.review.forms import form_values

    copy = store.state(1).draft.model_copy(deep=True)
    copy.provenance.model_version = "0.0.2"
    second, _ = store.add_draft(copy, study_path=store.state(1).study_path)
    sign_in(client, "bob")
    token = csrf_from(client.get("/").text)
    body = {"version": 0, "report": form_values(truth)}
    signed = client.post("/api/drafts/1/sign", json=body, headers={"X-CSRF-Token": token})
    assert signed.status_code == 200  # unclaimed: signing claims it, never opened
    token, _ = open_page(client, second)
    signed = client.post(f"/api/drafts/{second}/sign", json=body, headers={"X-CSRF-Token": token})
    assert signed.status_code == 200
    api_only, opened = list(store.corrections())
    assert api_only.opened_by_signer is False and api_only.time_spent_s == 0.0
    assert opened.opened_by_signer is True and opened.time_spent_s > 0


def test_a_log_from_before_the_chain_is_linked_whole_by_the_upgrade(tmp_path):
    from alembic import command
    from alembic.config import Config

    from reportgen.review.store.engine import MIGRATIONS, create_log_engine

    db = str(tmp_path / "old.db")
    engine = create_log_engine(db)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO clinicians (username, display_name, password_hash, created_at) "
                "VALUES ('alice', 'Dr Alice', 'h', '2025-01-01 00:00:00')"
            )
        )
        connection.execute(
            text("INSERT INTO audit_events (at, action, detail) VALUES ('2025-01-01', 'x', '{}')")
        )
    engine.dispose()
    store = RewardLog(db)
    assert store.chain_head()[0] == 2 and store.key is None
    assert store.accounts.by_name("alice").role == "reviewer"
    [unkeyed] = store.verify()
    assert "not keyed" in unkeyed and "reportgen review rekey" in unkeyed
    with pytest.raises(BrokenChain, match="not keyed"):
        store.check_chain()  # the app refuses to serve it until the operator rekeys
    assert store.rekey().is_file() and store.verify() == []
    with pytest.raises(ConfigError, match="keyed already"):
        store.rekey()
    assert RewardLog(db).verify() == []  # opened again, with the key it was keyed with
