"""Where the engine reads the time of its timers: due times, due checks and ``wf.utc_now``.

An app's ``clock`` is the real one unless given another: the testing kit
(:mod:`dramatiq_encore.testing`) gives its apps a virtual clock that it moves forward when
nothing can run, so a workflow that sleeps for days finishes in milliseconds. The state
store and the outbox read the same clock, so a timer is due by the clock that set it.
Other times (when a step was recorded, leases, the workflow index) stay on the wall clock.
"""

from __future__ import annotations

import datetime as dt
import time


class Clock:
    """The real clock."""

    def time(self) -> float:
        """Epoch seconds."""
        return time.time()

    def utc_now(self) -> dt.datetime:
        """An aware UTC datetime (``wf.utc_now`` draws its values from it)."""
        return dt.datetime.now(dt.UTC)


REAL_CLOCK = Clock()
