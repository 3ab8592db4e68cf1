"""The fixture the review app's attack tests share: a log on each backend with a draft and
three clinicians (two reviewers and an admin). Registered for every test by tests/conftest.py (`pytest_plugins`)."""

from __future__ import annotations

import pytest

from helpers.review import PASSWORD, make_db, studies_with_draft
from reportgen.review.drafts import import_drafts
from reportgen.review.store import RewardLog

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def env(request, tmp_path):
    """(db, store, studies root, the draft's truth) on SQLite and on PostgreSQL."""
    db = make_db(request.param, tmp_path)
    root, _, truth = studies_with_draft(tmp_path / "studies")
    store = RewardLog(db)
    import_drafts(store, root)
    store.accounts.add("alice", "Dr Alice", PASSWORD)
    store.accounts.add("bob", "Dr Bob", PASSWORD)
    store.accounts.add("root", "Dr Admin", PASSWORD, role="admin")
    yield db, store, root, truth
    store.close()
