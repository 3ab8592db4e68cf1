"""Process-parallel map that is safe to call after torch has started its thread pools.

Forking a process whose OpenMP/MKL pools are running can deadlock the child, so workers
are started with ``spawn``. Spawning costs an interpreter start per worker, so small
batches run in-process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")

SERIAL_BELOW = 8


def parallel_map(
    function: Callable[[Job], Result], jobs: Iterable[Job], workers: int | None = None
) -> Iterator[Result]:
    """Results of ``function`` over ``jobs`` in order; serial for few jobs or one worker."""
    jobs = list(jobs)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1 or len(jobs) < SERIAL_BELOW:
        yield from map(function, jobs)
        return
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        yield from pool.map(function, jobs)
