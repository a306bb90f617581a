"""A small per-process thread pool for state-store calls that overlap a publish.

A publish with confirms blocks its thread until RabbitMQ confirms (about a millisecond);
a commit sent from a helper thread meanwhile frees the invocation's lease before the next
message for it can arrive. Created lazily in each process: dramatiq forks its worker
processes after the app is imported, and threads do not survive a fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

WORKERS = 4


class Beside:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        pool = self._pool
        if pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="encore-beside")
                    self._pid = os.getpid()
                pool = self._pool
        return pool.submit(fn, *args, **kwargs)
