"""Review app under load: 20 signed-in clients saving edits for a minute on loopback.

Prints and writes JSON: saves acknowledged, conflicts refused, errors, p50/p95 save latency,
and whether the log holds exactly the acknowledged revisions (none lost or duplicated).

    python bench/review_load.py [--seconds 60] [--clients 20] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
from pathlib import Path

from bench_io import scratch_dir, use_test_helpers

from reportgen.review.store import integrity_problems

use_test_helpers()
from helpers.load import run_load  # noqa: E402
from helpers.review import PASSWORD, review_log_with_draft  # noqa: E402
from helpers.server import ReviewServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--drafts", type=int, default=5)
    parser.add_argument("--db", default=None, help="default: a new SQLite file")
    parser.add_argument("--out", type=Path, default=Path("bench/results/review_load.json"))
    args = parser.parse_args()
    work = scratch_dir("reportgen-load-")
    db, store, root, draft, truth = review_log_with_draft(work, args.db)
    draft_ids = [store.worklist()[0].draft_id]
    for i in range(1, args.drafts):
        copy = draft.model_copy(deep=True)
        copy.provenance.model_version = f"load-{i}"
        draft_ids.append(store.add_draft(copy, study_path=truth.study.study_id)[0])
    # a draft is its claimant's alone, so the clients of one draft are one clinician in
    # several tabs: their saves still collide (stale versions), as two clinicians' once did
    accounts = [(f"load{i % args.drafts}", PASSWORD) for i in range(args.clients)]
    for name in sorted({name for name, _ in accounts}):
        store.accounts.add(name, name, PASSWORD)
    server = ReviewServer(db, root, work / "server.log")
    try:
        result = run_load(server.url, accounts, draft_ids, args.seconds)
    finally:
        server.kill(signal.SIGTERM)
    in_log = sorted((d, n) for d in draft_ids for n in store.revision_numbers(d))
    summary = {
        "backend": store.engine.dialect.name,
        **result.summary(),
        "log_matches_acknowledged": sorted(result.acknowledged) == in_log,
        "duplicates": len(result.acknowledged) - len(set(result.acknowledged)),
        "integrity_problems": integrity_problems(store.engine),
        "hash_chain_problems": store.verify(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (server and clients share them)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
