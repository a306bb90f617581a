"""The kit's driver thread: sends held messages when due and, with ``skip_time``, skips the
clock to the next one when nothing can run and a caller waits for something that has not
happened yet."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq

from ..state.backend import StateBackend
from .broker import KitBroker, timer_of

#: How often the driver looks (seconds): the latency of a skip.
TICK_S = 0.002


class Waiter:
    """A caller waiting until ``condition`` holds; ``reached`` is set once the driver saw it
    hold while nothing could run."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self.condition = condition
        self.reached = threading.Event()


class Driver:
    """Time only skips while a caller waits (``Invocation.wait``, ``Run.result``,
    ``Run.wait_suspended``) for something that has not happened: between two calls of a test
    the clock runs at the wall clock's pace, so a signal sent then arrives before a timeout
    that was days away."""

    def __init__(self, broker: KitBroker, state: StateBackend) -> None:
        self.broker = broker
        self.state = state
        self._waiters: list[Waiter] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="encore-testing-driver", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def waiting(self, condition: Callable[[], bool]) -> Iterator[Waiter]:
        waiter = Waiter(condition)
        with self._lock:
            self._waiters.append(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                self._waiters.remove(waiter)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self.broker.release_due()
            with self._lock:
                waiters = [w for w in self._waiters if not w.reached.is_set()]
            if waiters and self.broker.idle():
                self._settled(waiters)

    def _settled(self, waiters: list[Waiter]) -> None:
        """Nothing can run: tell the waiters whose condition holds; skip for the others."""
        pending = False
        for waiter in waiters:
            if waiter.condition():
                waiter.reached.set()
            else:
                pending = True
        if pending and self.broker.skip_time:
            self.broker.skip(self._stale)

    def _stale(self, message: dramatiq.Message[Any]) -> bool:
        timer = timer_of(message)
        return timer is not None and self.state.timer_due(timer[0], timer[1]) is None
