"""Sign-in flood control: back-off per account name and client address, and a cap on the
Argon2 checks running at once.

`SignInThrottle`: after `free` failures in a row a key is locked for 1 s, then 2, 4, ... up
to `max_lock_s`; while locked, sign-in is refused before the password is even checked (so
the right password does not get in either). A success clears the account's count. In
memory, per process: a restart forgets, which only ever makes it more lenient.

`PasswordChecks`: Argon2 is memory- and CPU-hard on purpose, so at most `slots` checks run
at once, on threads of their own. A sign-in waiting for a slot waits on the event loop,
holding no thread of the pool the readers' requests run on, and gets `Busy` (503) after
`wait_s`: a flood of sign-ins slows sign-ins, never reading.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from reportgen.errors import ReportgenError

T = TypeVar("T")
POLL_S = 0.02


class Busy(ReportgenError):
    """Too many sign-ins are being checked at once; the client should retry shortly."""


class PasswordChecks:
    def __init__(self, slots: int = 1, wait_s: float = 5.0):
        self.wait_s = wait_s
        # a threading semaphore polled from the loop: asyncio's would bind to the first
        # event loop that waits on it, and a test client starts one per request
        self.slots = threading.BoundedSemaphore(slots)
        self._threads = ThreadPoolExecutor(slots, thread_name_prefix="argon2")

    async def run(self, check: Callable[..., T], *args) -> T:
        deadline = time.monotonic() + self.wait_s
        while not self.slots.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise Busy("too many sign-ins at once; try again in a few seconds")
            await asyncio.sleep(POLL_S)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, check, *args)
        finally:
            self.slots.release()


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class SignInThrottle:
    def __init__(
        self,
        free: int = 5,
        max_lock_s: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free = free
        self.clock = clock
        self.max_lock_s = max_lock_s
        self.max_keys = max_keys
        self._keys: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def _lock_s(self, failures: _Failures) -> float:
        over = failures.count - self.free
        return 0.0 if over < 0 else min(2.0**over, self.max_lock_s)

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until any of `keys` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            waits = [
                f.last + self._lock_s(f) - now for k in keys if (f := self._keys.get(k)) is not None
            ]
        return max([0.0, *waits])

    def failed(self, keys: list[str]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._keys) >= self.max_keys:  # bounded memory under a spray of names
                oldest = sorted(self._keys, key=lambda k: self._keys[k].last)[: self.max_keys // 10]
                for k in oldest:
                    del self._keys[k]
            for k in keys:
                f = self._keys.setdefault(k, _Failures())
                f.count += 1
                f.last = now

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._keys.pop(k, None)
