"""The kit's broker: dramatiq's stub broker that knows when nothing can run, and that holds
delayed messages on the kit's clock when time is skipped."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from ..actors.messages import ENVELOPE
from .clock import VirtualClock

#: Whether a held message is a wake-up nobody needs any more (its timer resolved meanwhile).
Stale = Callable[[dramatiq.Message[Any]], bool]


def timer_of(message: dramatiq.Message[Any]) -> tuple[str, int, float] | None:
    """(invocation id, step, due) of a timer wake-up, else None."""
    envelope = message.options.get(ENVELOPE)
    if not isinstance(envelope, dict) or envelope.get("kind") != "timer":
        return None
    return str(envelope["invocation_id"]), int(envelope["step"]), float(envelope["due"])


class KitBroker(StubBroker):
    """A :class:`StubBroker` for the kit.

    With ``skip_time`` a delayed message (a timer's wake-up, a retry's backoff, a re-send)
    is not handed to the worker's delay queue: it is held here until the kit's clock reaches
    its time, which :meth:`skip` jumps to when nothing else can run. A timer's wake-up is held
    until its timer is due, however far away (the engine sends one hop of at most 30 s).
    """

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock
        self.skip_time = False
        self._held: list[tuple[float, int, dramatiq.Message[Any]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._sent = 0  # messages put on a queue so far (see idle())

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        if delay is not None and self.skip_time:
            eta = self.clock.time() + delay / 1000
            timer = timer_of(message)
            if timer is not None:
                eta = max(eta, timer[2])
            held = message.copy()  # a retry passes the proxy of the message being processed
            with self._lock:
                heapq.heappush(self._held, (eta, next(self._order), held))
            return held
        with self._lock:
            self._sent += 1
        return super().enqueue(message, delay=delay)

    def idle(self) -> bool:
        """True when no message is queued, being processed or about to be acked (a delayed
        message waiting for its time does not count): nothing can run until one is sent.

        A worker sends what a message leads to before it acks that message, so some queue
        always counts a chain in progress; the count of messages sent, unchanged across the
        scan, rules out one moving from a queue scanned later to one scanned earlier.
        """
        sent = self._sent
        for name, queue in self.queues.items():
            if name not in self.delay_queues and queue.unfinished_tasks:
                return False
        return sent == self._sent

    def release_due(self) -> None:
        """Send the held messages whose time has come on the kit's clock."""
        now = self.clock.time()
        while True:
            with self._lock:
                if not self._held or self._held[0][0] > now:
                    return
                _, _, message = heapq.heappop(self._held)
            self.enqueue(message)

    def skip(self, stale: Stale) -> bool:
        """Jump the clock to the first held message that is still needed and send it; False
        when none is held. Wake-ups of timers resolved meanwhile are dropped, not waited for."""
        while True:
            with self._lock:
                if not self._held:
                    return False
                eta, _, message = heapq.heappop(self._held)
            if not stale(message):
                self.clock.advance_to(eta)
                self.enqueue(message)
                return True
