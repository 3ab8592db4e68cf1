"""A signed-in reader's latency while 60 clients, from 60 loopback addresses, sign in at once.

Each attacker uses its own unknown name, so no lock-out spares an Argon2 check: the
worst case for CPU. Prints and writes JSON: the reader's p50/p95/max before and during the
flood, and what the sign-ins got (401 checked, 503 busy).

    python bench/review_signin_flood.py [--attackers 60] [--rounds 2] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
from pathlib import Path

from bench_io import scratch_dir, use_test_helpers, write_result

use_test_helpers()
from helpers.load import sign_in_flood, signed_in_client  # noqa: E402
from helpers.review import PASSWORD, review_log_with_draft  # noqa: E402
from helpers.server import ReviewServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--db", default=None, help="default: a new SQLite file")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = scratch_dir("reportgen-flood-")
    db, store, root, _, _ = review_log_with_draft(work, args.db)
    store.accounts.add("reader", "Dr Reader", PASSWORD)
    server = ReviewServer(db, root, work / "server.log")
    try:
        reader = signed_in_client(server.url, "reader", PASSWORD)
        draft_id = store.worklist()[0].draft_id
        result = sign_in_flood(server.url, reader, draft_id, args.attackers, args.rounds)
    finally:
        server.kill(signal.SIGTERM)
    backend = store.engine.dialect.name
    summary = {
        "backend": backend,
        "attackers": args.attackers,
        "rounds": args.rounds,
        **result.summary(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (server and clients share them)",
    }
    write_result(args.out or Path(f"bench/results/review_signin_flood_{backend}.json"), summary)


if __name__ == "__main__":
    main()
