"""Fixtures for the review app and reward log: a studies folder with a model draft, databases."""

from __future__ import annotations

import html
import json
import os
import re
import uuid
from pathlib import Path

import pytest

from reportgen.report import Report, build_report, load_template
from reportgen.report.schema import Provenance
from reportgen.report.values import plain

PASSWORD = "correct horse battery"


def postgres_url() -> str | None:
    url = os.environ.get("REPORTGEN_TEST_POSTGRES_URL")
    if not url and os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1":
        pytest.fail("REPORTGEN_TEST_POSTGRES_URL is not set but CI requires the PostgreSQL tests")
    return url


def fresh_postgres_db() -> str:
    """A new, empty database on the test server (one per test: tests never share state)."""
    from sqlalchemy import create_engine, text

    base = postgres_url()
    if not base:
        pytest.skip("no PostgreSQL server (set REPORTGEN_TEST_POSTGRES_URL; .ci/run does)")
    name = f"rg_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return base.rsplit("/", 1)[0] + f"/{name}"


def make_db(kind: str, tmp_path: Path) -> str:
    return str(tmp_path / "log.db") if kind == "sqlite" else fresh_postgres_db()


def studies_with_draft(root: Path, seed: int = 5) -> tuple[Path, Report, Report]:
    """One synthetic breast study and a model draft of it that differs from the truth.

    The draft is the phantom's true report with two fields changed (a size and a margin),
    written where `reportgen generate --out` would put it, so corrections have something to fix.
    """
    from reportgen.synth import SynthOptions, synth_dataset

    manifest = synth_dataset(
        root,
        1,
        SynthOptions(protocol="low_resolution", domain="breast", seed=seed, malignant_fraction=1.0),
        workers=1,
    )
    row = json.loads(manifest.read_text().splitlines()[0])
    truth = Report.from_json((root / row["dir"] / "report.json").read_text())
    template = load_template(truth.template.id)
    findings = [plain(f.fields) for f in truth.findings]
    findings[0]["size_mm"] = min(
        float(findings[0]["size_mm"]) + 7, template.field("size_mm").range[1]
    )
    findings[0]["margin"] = (
        "margin_circumscribed"
        if findings[0].get("margin") != "margin_circumscribed"
        else "margin_irregular"
    )
    draft = build_report(
        template,
        plain(truth.fields),
        findings,
        study=truth.study,
        provenance=Provenance(
            source="model",
            model_name="test-model",
            model_version="0.0.1",
            checkpoint_sha256="0" * 64,
        ),
        notice="test draft; not for clinical use",
    )
    (root / f"{truth.study.study_id}.draft.json").write_text(draft.to_json())
    return root, draft, truth


def csrf_from(page_html: str) -> str:
    match = re.search(r'data-csrf="([^"]+)"', page_html) or re.search(
        r'name="csrf_token" value="([^"]+)"', page_html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


def page_data(page_html: str) -> dict:
    match = re.search(r'data-page="([^"]+)"', page_html)
    assert match
    return json.loads(html.unescape(match.group(1)))


def sign_in(client, username: str = "alice", password: str = PASSWORD):
    token = csrf_from(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def app_role(owner_url: str, cli, grants: bool = True) -> tuple[str, str]:
    """A new PostgreSQL login role (granted what `review migrate --app-role` grants, unless
    `grants` is False) and the URL that connects as it."""
    from sqlalchemy import create_engine, text

    role = f"rg_{uuid.uuid4().hex[:8]}"
    owner = create_engine(owner_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with owner.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN"))
    owner.dispose()
    if grants:
        assert cli("review", "migrate", "--db", owner_url, "--app-role", role).code == 0
    return role, owner_url.replace("postgres@", f"{role}@", 1)


def review_log_with_draft(work: Path, db: str | None = None):
    """What the review benches start from: the log's key in `work` (the server the bench
    starts reads it too), a studies folder with one model draft, the log (a new SQLite file
    in `work` unless `db`) with that draft imported. Returns (db, store, root, draft, truth)."""
    from reportgen.review.drafts import import_drafts
    from reportgen.review.store import RewardLog

    os.environ["REPORTGEN_LOG_KEY_FILE"] = str(work / "log.key")
    db = db or str(work / "log.db")
    root, draft, truth = studies_with_draft(work / "studies")
    store = RewardLog(db)
    import_drafts(store, root)
    return db, store, root, draft, truth
