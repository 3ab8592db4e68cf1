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


@dataclass
class FloodResult:
    reader_ms: list[float]  # a signed-in reader's reads while the flood ran
    baseline_ms: list[float]  # the same reads before it
    sign_in_statuses: dict[int, int]  # HTTP status -> how many sign-ins got it
    reader_errors: int = 0

    def summary(self) -> dict:
        def stats(values: list[float]) -> dict:
            lat = np.asarray(values) if values else np.zeros(1)
            return {
                "reads": len(values),
                "p50_ms": round(float(np.percentile(lat, 50)), 1),
                "p95_ms": round(float(np.percentile(lat, 95)), 1),
                "max_ms": round(float(lat.max()), 1),
            }

        return {
            "baseline": stats(self.baseline_ms),
            "during_flood": stats(self.reader_ms),
            "reader_errors": self.reader_errors,
            "sign_in_statuses": {str(k): v for k, v in sorted(self.sign_in_statuses.items())},
        }


def sign_in_flood(
    base_url: str, reader: httpx.Client, draft_id: int, attackers: int = 60, rounds: int = 2
) -> FloodResult:
    """`attackers` clients, each from its own loopback address (127.0.0.2, ...) and with its
    own unknown name (so no lock-out spares the server an Argon2 check), sign in with wrong
    passwords `rounds` times, all at once, while `reader` reads a draft in a loop."""

    def timed_read() -> float:
        start = time.perf_counter()
        response = reader.get(f"/api/drafts/{draft_id}")
        if response.status_code != 200:
            raise RuntimeError(f"read failed: {response.status_code}")
        return (time.perf_counter() - start) * 1000

    result = FloodResult([], [timed_read() for _ in range(30)], {})
    ready = threading.Barrier(attackers + 1)
    done = threading.Event()
    lock = threading.Lock()

    def attack(i: int) -> None:
        address = f"127.0.{i // 250}.{i % 250 + 2}"
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(base_url=base_url, transport=transport, timeout=60) as client:
            token = re.search(
                r'name="csrf_token" value="([^"]+)"', client.get("/login").text
            ).group(1)
            ready.wait()
            for _ in range(rounds):
                status = client.post(
                    "/login",
                    data={
                        "username": f"nobody{i}",
                        "password": "wrong password",
                        "csrf_token": token,
                    },
                ).status_code
                with lock:
                    result.sign_in_statuses[status] = result.sign_in_statuses.get(status, 0) + 1

    def read() -> None:
        while not done.is_set():
            try:
                result.reader_ms.append(timed_read())
            except (RuntimeError, httpx.HTTPError):
                result.reader_errors += 1

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(attackers)]
    for thread in threads:
        thread.start()
    ready.wait()
    reading = threading.Thread(target=read)
    reading.start()
    for thread in threads:
        thread.join()
    done.set()
    reading.join()
    return result
