"""The reward log's hash chain: every appended row is a link that carries the hash before it.

Triggers stop the app and casual SQL from rewriting the log, but anyone with the database
file (or a superuser) can drop a trigger. The chain makes that visible: each row of a log
table gets a `ledger` link holding the SHA-256 of the row's content and the hash of the
link before it, so a row changed, deleted or slipped in behind the app's back breaks the
chain at a link `verify` can name. Links are appended in the same transaction as their
rows, under the store's writer lock (`writing.writing`), so the chain is one line.

A plain hash chain can still be extended by anyone who can insert rows: they compute the
next link as the app would. So the chain is keyed: a `log_key` link records the key's
fingerprint, and every link after it is an HMAC-SHA256 under the key (`log_key.py`), which
the database never holds. A new log is keyed from its first link; a log from before keys
holds plain links until the operator runs `reportgen review rekey` once, whose key link
seals everything before it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select

from reportgen.review.store.log_key import fingerprint
from reportgen.review.store.models import Base, LedgerLink

GENESIS = "0" * 64
KEY_LINK = "log_key"  # the table name of the link that keys the chain (no such table)
UNKEYED = (
    "the chain is not keyed, so anyone who can write to the database could extend it: "
    "run `reportgen review rekey` once"
)

# The columns each link hashes, fixed here (not read from the schema) so that a later
# migration adding a column does not break the links written before it.
CHAINED: dict[str, tuple[str, ...]] = {
    "clinicians": ("id", "username", "display_name", "password_hash", "created_at"),
    "studies": ("id", "path", "created_at"),
    "drafts": (
        "id",
        "study_id",
        "template_id",
        "report_json",
        "content_sha256",
        "model_name",
        "model_version",
        "checkpoint_sha256",
        "source_path",
        "created_at",
    ),
    "revisions": ("id", "draft_id", "number", "report_json", "clinician_id", "created_at"),
    "signed_reports": (
        "id",
        "draft_id",
        "revision_number",
        "report_json",
        "clinician_id",
        "signed_at",
    ),
    "corrections": (
        "id",
        "draft_id",
        "signed_report_id",
        "clinician_id",
        "template_id",
        "draft_json",
        "corrected_json",
        "diff",
        "time_spent_s",
        "model_version",
        "checkpoint_sha256",
        "opened_by_signer",
        "created_at",
    ),
    "audit_events": ("id", "at", "clinician_id", "action", "draft_id", "detail"),
    "account_changes": (
        "id",
        "clinician_id",
        "by_clinician_id",
        "password_hash",
        "role",
        "disabled",
        "at",
    ),
    "claims": ("id", "draft_id", "clinician_id", "override", "at"),
}


def _plain(value):
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, float):
        return repr(value)
    return value


def row_sha256(table: str, row: Mapping) -> str:
    """The SHA-256 of a row's chained columns, as the database returns them."""
    values = [_plain(row[c]) for c in CHAINED[table]]
    text = json.dumps([table, values], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def link_sha256(prev: str, table: str, row_id: str, row_hash: str, key: bytes | None) -> str:
    """A link: a plain SHA-256 before the chain is keyed, an HMAC under the key after."""
    message = f"{prev}|{table}|{row_id}|{row_hash}".encode()
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _table(name: str):
    return Base.metadata.tables[name]


def _rows(connection: Connection, table: str, ids: Iterable | None = None) -> dict[str, Mapping]:
    t = _table(table)
    query = select(*(t.c[c] for c in CHAINED[table]))
    if ids is not None:
        query = query.where(t.c.id.in_(list(ids)))
    return {str(r["id"]): r for r in connection.execute(query).mappings()}


def _head(connection: Connection) -> tuple[int, str]:
    last = connection.execute(
        select(LedgerLink.seq, LedgerLink.sha256).order_by(LedgerLink.seq.desc()).limit(1)
    ).first()
    return (last.seq, last.sha256) if last else (0, GENESIS)


def key_state(connection: Connection) -> tuple[int, str | None]:
    """(links in the chain, the fingerprint its key link records; None: not keyed)."""
    links = connection.execute(select(func.count()).select_from(LedgerLink)).scalar_one()
    recorded = connection.execute(
        select(LedgerLink.row_sha256).where(LedgerLink.table_name == KEY_LINK).limit(1)
    ).scalar()
    return int(links), recorded


def add_key_link(connection: Connection, key: bytes) -> None:
    """Key the chain: one link naming the key's fingerprint, an HMAC over all before it."""
    seq, prev = _head(connection)
    recorded = fingerprint(key)
    row_id = recorded[:16]
    connection.execute(
        LedgerLink.__table__.insert(),
        {
            "seq": seq + 1,
            "table_name": KEY_LINK,
            "row_id": row_id,
            "row_sha256": recorded,
            "prev_sha256": prev,
            "sha256": link_sha256(prev, KEY_LINK, row_id, recorded, key),
        },
    )


def append(connection: Connection, new_rows: list[tuple[str, object]], key: bytes | None) -> None:
    """Add links for rows just inserted in this transaction (table order, then id order)."""
    if not new_rows:
        return
    seq, prev = _head(connection)
    order = list(CHAINED)
    by_table: dict[str, list] = {}
    for table, row_id in new_rows:
        by_table.setdefault(table, []).append(row_id)
    links = []
    for table in sorted(by_table, key=order.index):
        rows = _rows(connection, table, by_table[table])
        for row_id in sorted(rows, key=lambda i: (len(i), i)):
            row_hash = row_sha256(table, rows[row_id])
            seq += 1
            sha = link_sha256(prev, table, row_id, row_hash, key)
            links.append(
                {
                    "seq": seq,
                    "table_name": table,
                    "row_id": row_id,
                    "row_sha256": row_hash,
                    "prev_sha256": prev,
                    "sha256": sha,
                }
            )
            prev = sha
    connection.execute(LedgerLink.__table__.insert(), links)


def chain_existing(connection: Connection) -> None:
    """Link every row not yet in the chain (the migration that introduces the chain)."""
    ledger = LedgerLink.__table__
    linked = {(r.table_name, r.row_id) for r in connection.execute(select(ledger))}
    todo = [
        (table, row_id)
        for table in CHAINED
        for row_id in _rows(connection, table)
        if (table, row_id) not in linked
    ]
    append(connection, todo, key=None)  # the operator keys it: `reportgen review rekey`


def verify(connection: Connection, key: bytes | None) -> list[str]:
    """What is wrong with the chain, the first broken link first (empty: intact).

    After the key link every link must be an HMAC under `key`: one that is not was made
    by someone without the key, and is named as forged."""
    problems: list[str] = []
    rows = {table: _rows(connection, table) for table in CHAINED}
    seen: set[tuple[str, str]] = set()
    prev, expected_seq, keyed = GENESIS, 1, False
    ledger = LedgerLink.__table__
    for link in connection.execute(select(ledger).order_by(ledger.c.seq)):
        where = f"link {link.seq} ({link.table_name} row {link.row_id})"
        if link.seq != expected_seq:
            problems.append(f"link {expected_seq}: missing (the chain jumps to {link.seq})")
        is_key = link.table_name == KEY_LINK
        if is_key and keyed:
            problems.append(f"link {link.seq}: a second key link (forged)")
        elif is_key and (key is None or link.row_sha256 != fingerprint(key)):
            problems.append(f"link {link.seq}: the chain was keyed with another key than this one")
        keyed = keyed or is_key
        made = link_sha256(
            link.prev_sha256, link.table_name, link.row_id, link.row_sha256, key if keyed else None
        )
        if link.prev_sha256 != prev:
            problems.append(f"{where}: the link itself was rewritten")
        elif link.sha256 != made:
            problems.append(
                f"{where}: forged (its link was not made with the log's key)"
                if keyed
                else f"{where}: the link itself was rewritten"
            )
        prev, expected_seq = link.sha256, link.seq + 1
        if is_key:
            continue
        row = rows.get(link.table_name, {}).get(link.row_id)
        if row is None:
            problems.append(f"{where}: the row was deleted")
        elif row_sha256(link.table_name, row) != link.row_sha256:
            problems.append(f"{where}: the row was changed after it was written")
        seen.add((link.table_name, link.row_id))
    for table, table_rows in rows.items():
        for row_id in table_rows:
            if (table, row_id) not in seen:
                problems.append(
                    f"{table} row {row_id}: not in the chain (written behind the app's back)"
                )
    if expected_seq > 1 and not keyed:
        problems.append(UNKEYED)
    return problems
