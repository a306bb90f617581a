"""Embedded mode: an in-process dramatiq worker on the stub broker, started on first send.

It starts lazily, never in ``Encore()``: the ``dramatiq`` CLI imports the same module and
runs its own workers.
"""

from __future__ import annotations

import atexit
import logging
import threading

import dramatiq
from dramatiq.middleware import TimeLimit

logger = logging.getLogger(__name__)

WORKER_THREADS = 8
# How often the worker looks at delayed messages (retries, contention re-sends), in ms.
WORKER_TIMEOUT_MS = 20


def start_time_limits(broker: dramatiq.Broker) -> None:
    """Start TimeLimit's watchdog, as the ``dramatiq`` CLI does when a worker process boots.

    An in-process ``dramatiq.Worker`` never emits ``process_boot``, so without this the
    ``time_limit`` actor option would silently not apply. Only this middleware is booted:
    emitting ``process_boot`` itself would also start, say, a Prometheus exporter.
    """
    for middleware in broker.middleware:
        if isinstance(middleware, TimeLimit) and not getattr(middleware.manager, "is_alive", lambda: True)():
            middleware.after_process_boot(broker)  # type: ignore[no-untyped-call]


class EmbeddedWorker:
    def __init__(self, broker: dramatiq.Broker, threads: int = WORKER_THREADS) -> None:
        self._broker = broker
        self._threads = threads
        self._worker: dramatiq.Worker | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self) -> None:
        with self._lock:
            if self._worker is not None:
                return
            start_time_limits(self._broker)
            self._worker = dramatiq.Worker(self._broker, worker_threads=self._threads, worker_timeout=WORKER_TIMEOUT_MS)
            self._worker.start()
            atexit.register(self.stop)
            logger.debug("embedded worker started with %d threads", self._threads)

    def stop(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout=5_000)
            atexit.unregister(self.stop)
