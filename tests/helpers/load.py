"""A load generator for the review API: many signed-in clinicians saving edits at once.

Used by the CI load test and `bench/review_load.py`; a hospital can point it at a
staging server to size it. Each client signs in over HTTP like a browser, then loops:
read the draft's version, change the first finding's size, save. Every acknowledged
save is recorded so the caller can check the log holds exactly those revisions.
"""

from __future__ import annotations

import html
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field

import httpx
import numpy as np


@dataclass
class LoadResult:
    clients: int
    seconds: float
    saves: int = 0
    conflicts: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged: list[tuple[int, int]] = field(default_factory=list)  # (draft id, version)

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 1),
            "saves_acknowledged": self.saves,
            "conflicts_refused": self.conflicts,
            "errors": self.errors,
            "saves_per_s": round(self.saves / self.seconds, 1) if self.seconds else 0.0,
            "save_p50_ms": round(float(np.percentile(lat, 50)), 1),
            "save_p95_ms": round(float(np.percentile(lat, 95)), 1),
        }


def signed_in_client(base_url: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=60)
    login = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    for _ in range(20):  # 503: too many sign-ins being checked at once; retry as asked
        response = client.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}
        )
        if response.status_code != 503:
            break
        time.sleep(float(response.headers.get("retry-after", 1)))
    if response.status_code not in (200, 303) or "Worklist" not in client.get("/").text:
        raise RuntimeError(f"sign-in as {username} failed ({response.status_code})")
    return client


def open_draft(client: httpx.Client, draft_id: int) -> tuple[str, dict]:
    """The page's CSRF token and its data (controls and current values)."""
    page = client.get(f"/drafts/{draft_id}").text
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
    data = json.loads(html.unescape(re.search(r'data-page="([^"]+)"', page).group(1)))
    return csrf, data


def run_load(
    base_url: str,
    accounts: list[tuple[str, str]],
    draft_ids: list[int],
    seconds: float,
    seed: int = 0,
    stop: threading.Event | None = None,
) -> LoadResult:
    """`len(accounts)` clients, client i editing draft `draft_ids[i % len(draft_ids)]`."""
    result = LoadResult(clients=len(accounts), seconds=seconds)
    lock = threading.Lock()
    stop = stop or threading.Event()
    ready = threading.Barrier(len(accounts) + 1)

    def client_loop(index: int, username: str, password: str) -> None:
        rng = random.Random(seed + index)
        draft_id = draft_ids[index % len(draft_ids)]
        try:
            client = signed_in_client(base_url, username, password)
            csrf, page = open_draft(client, draft_id)
        finally:
            ready.wait()
        size = next(c for c in page["finding_controls"] if c["id"] == "size_mm")
        form = page["values"]
        headers = {"X-CSRF-Token": csrf}
        while not stop.is_set():
            try:
                version = client.get(f"/api/drafts/{draft_id}").json()["version"]
                form["findings"][0]["size_mm"] = rng.randint(int(size["minimum"]) + 1, 60)
                start = time.perf_counter()
                response = client.post(
                    f"/api/drafts/{draft_id}/revisions",
                    json={"version": version, "report": form},
                    headers=headers,
                )
                elapsed = (time.perf_counter() - start) * 1000
            except httpx.HTTPError:
                with lock:
                    result.errors += 1
                continue
            with lock:
                if response.status_code == 200:
                    result.saves += 1
                    result.latencies_ms.append(elapsed)
                    result.acknowledged.append((draft_id, response.json()["version"]))
                elif response.status_code == 409:
                    result.conflicts += 1
                else:
                    result.errors += 1

    threads = [
        threading.Thread(target=client_loop, args=(i, u, p), daemon=True)
        for i, (u, p) in enumerate(accounts)
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.monotonic()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    result.seconds = time.monotonic() - start
    return result
