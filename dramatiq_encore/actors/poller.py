"""The timer poller: wakes due timers from the store's timer index (``ENCORE_TIMER_POLL``).

A sleeping workflow holds no message: the commit that records a timer step also puts it in
its shard's timer index (``<prefix>:{s<n>}:ix:due``). Every worker process runs one poller
thread that, every ``ENCORE_TIMER_POLL_INTERVAL`` seconds, claims the timers that are due
(``poll_timers.lua`` moves each a claim period into the future, atomically, so two pollers
never both take one) and sends each invocation its wake-up (the same ``TimerEnvelope`` the
delayed-message path sends). Any worker may poll; there is no leader. A wake-up that is lost
(a crash between the claim and the publish) is due again after the claim period; one sent
twice resolves its step once (its trigger key). The wake-up's delivery takes the timer out of
the index. With ``ENCORE_TIMER_POLL=0`` (or a store without a timer index, the in-memory one)
the runtime sends a delayed message per timer instead (:meth:`.outbox.Outbox.send_timer`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from ..state.backend import TimerIndex
from .messages import TimerEnvelope

if TYPE_CHECKING:
    from ..app import Encore

logger = logging.getLogger(__name__)

#: A claimed wake-up that was lost is due again after this long.
CLAIM_S = 30.0
BATCH = 200


def polled(app: Encore) -> bool:
    """Whether ``app``'s timers are woken by the poller (else by delayed messages)."""
    return app.settings.timer_poll and isinstance(app.state, TimerIndex) and app.state.timer_index


class TimerPoller:
    def __init__(self, app: Encore) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="encore-timer-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        pid = os.getpid()
        while pid == os.getpid() and not self._stop.wait(self.app.settings.timer_poll_interval):
            try:
                while self.poll() == BATCH:  # a backlog: go on at once
                    pass
            except Exception:  # the store or the broker is down: the next round tries again
                logger.warning("the timer poller could not wake due timers; it tries again", exc_info=True)

    def poll(self) -> int:
        """Wake the timers due now; how many there were."""
        state = self.app.state
        assert isinstance(state, TimerIndex)
        due = state.claim_due_timers(BATCH, CLAIM_S)
        for invocation_id, step, when in due:
            meta = self.app.state.get_meta(invocation_id)
            if meta is None:  # expired or lost: its delivery (below) would say so; nothing to send
                continue
            envelope = TimerEnvelope(invocation_id=invocation_id, step=step, due=when)
            self.app.runtime.outbox.send_timer(meta.record.queue, meta.record.task, envelope, poll=True)
        return len(due)
