"""The kit's virtual clock: the wall clock plus the time skipped so far."""

from __future__ import annotations

import datetime as dt
import threading
import time

from ..clock import Clock


class VirtualClock(Clock):
    """Runs at the wall clock's pace; :meth:`advance_to` jumps it forward, never back, so the
    values it gives (and ``wf.utc_now``'s) keep increasing."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        return time.time() + self._offset

    def utc_now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    @property
    def skipped(self) -> float:
        """Seconds skipped so far."""
        return self._offset

    def advance_to(self, when: float) -> None:
        """Move the clock to ``when`` (epoch seconds) if it is not there yet."""
        with self._lock:
            gap = when - self.time()
            if gap > 0:
                self._offset += gap
