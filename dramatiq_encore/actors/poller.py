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

import heapq
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from ..state.backend import TimerIndex
from .messages import TimerEnvelope

if TYPE_CHECKING:
    from ..app import Encore

logger = logging.getLogger(__name__)

#: A claimed wake-up that was lost is due again after this long.
CLAIM_S = 30.0
BATCH = 200
#: How long after its due time a timer this process recorded is checked for (see Shadow).
GRACE_S = 2.0


class Shadow:
    """The timers this process recorded, kept (bounded) until a little after they are due.

    The timer index lives in the store: a store that loses its data (a restart without
    persistence) loses the index too, and a workflow that only sleeps would never learn it
    (the delayed-message path had a message in RabbitMQ that came back and found no record).
    So each process remembers the timers it recorded; once one is ``GRACE_S`` past its due
    time and the store has no record of its invocation, the poller sends its wake-up anyway,
    and its delivery marks the invocation lost, loudly, as every other message does. At most
    ``size`` timers per process (the oldest are dropped: best effort after a restart).
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._heap: list[tuple[float, str, int, str, str]] = []
        self._lock = threading.Lock()

    def add(self, due: float, invocation_id: str, step: int, queue: str, actor: str) -> None:
        with self._lock:
            heapq.heappush(self._heap, (due, invocation_id, step, queue, actor))
            if len(self._heap) > self.size:
                self._heap = heapq.nsmallest(self.size, self._heap)
                heapq.heapify(self._heap)

    def past(self, now: float) -> list[tuple[float, str, int, str, str]]:
        with self._lock:
            out = []
            while self._heap and self._heap[0][0] + GRACE_S <= now:
                out.append(heapq.heappop(self._heap))
            return out


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
                self.check_shadow()
            except Exception:  # the store or the broker is down: the next round tries again
                logger.warning("the timer poller could not wake due timers; it tries again", exc_info=True)

    def check_shadow(self) -> None:
        """Timers this process recorded, now past due: wake those whose invocation the store
        no longer knows (the delivery marks them lost)."""
        for due, invocation_id, step, queue, actor in self.app.runtime.outbox.shadow.past(time.time()):
            if self.app.state.get_meta(invocation_id) is None and self.app.state.lost_reason(invocation_id) is None:
                envelope = TimerEnvelope(invocation_id=invocation_id, step=step, due=due)
                self.app.runtime.outbox.send_timer(queue, actor, envelope, poll=True)

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
