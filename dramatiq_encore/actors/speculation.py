"""Passes that run while their delivery is on its way: the round trip off a step's path.

A pass may start before its delivery returned as long as it uses only what it already
holds; at its frontier (the first value, step or result it does not hold, see
``PassState._at_frontier``) a gate reads the delivery and confirms or abandons the pass.
No ``wf`` value is drawn before the lease is held, so an abandoned pass showed user code
nothing that a later pass could contradict.

- :class:`Resume`: a parent resumed by a child's result, whose snapshot this process
  holds from its previous pass, replays it while the delivery is on its way.
- :class:`Gate`: a child's start message delivered for the first time almost always finds
  no state, so its first pass runs at once on the empty state and its delivery (create the
  record, record the trigger, take the lease) is made when first needed. A leaf that
  finishes without needing it is delivered and committed in one round trip, then sends its
  result (or resumes its parent in place).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..state.backend import Commit, CommitResult, Delivery, StateBackend, Trigger, empty_state
from ..state.models import InvocationRecord
from .leases import LeaseKeeper

if TYPE_CHECKING:
    from .replay import Snapshot


class Gate:
    """The delivery of one child's first pass, made once, by whoever needs it first.

    That is the pass at its frontier, the runtime after the pass (once a finished leaf's
    result was sent to its parent), or the :class:`Window` while a long pass runs (so the
    record shows ``running`` and the lease is renewed). Called from inside user code at the
    frontier, so that call never raises: a store error is kept in ``error`` and the runtime
    raises it after the pass.
    """

    def __init__(
        self,
        state: StateBackend,
        leases: LeaseKeeper,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord,
    ) -> None:
        self._state = state
        self._trigger = trigger
        self._record = record
        self._leases = leases
        self.invocation_id = invocation_id
        self._lock = threading.Lock()
        # Made when first needed, not sent ahead: sending it costs the pass more than the
        # round trip it would hide (measured with benchmarks/step_latency.py).
        self._make: Callable[[], Delivery] | None = functools.partial(
            state.deliver, invocation_id, trigger, record, load_from=0
        )
        self.delivery: Delivery | None = None
        self.error: Exception | None = None

    @property
    def made(self) -> bool:
        """The delivery was made (or is being made)."""
        return self._make is None or self._lock.locked()

    def deliver(self) -> Delivery:
        """The delivery, made now unless it was made already (waits for one in progress)."""
        with self._lock:
            self._make_once()
        if self.error is not None:
            raise self.error
        assert self.delivery is not None
        return self.delivery

    def _make_once(self) -> None:
        if self._make is None:
            return
        make, self._make = self._make, None
        try:
            self.delivery = make()
        except Exception as exc:
            self.error = exc
            return
        if self.delivery.token is not None:
            self._leases.hold(self.invocation_id, self.delivery.token)  # renewed while the pass runs

    def finish(self, commit: Commit) -> CommitResult | None:
        """A finished pass that never needed the delivery: make it and commit the pass in one
        round trip (None when the state was not the empty one: nothing committed)."""
        with self._lock:
            if self._make is not None:
                self._make = None
                self.delivery, committed = self._state.finish_first_pass(
                    self.invocation_id, self._trigger, self._record, commit
                )
                if committed is not None:
                    return committed
                if self.delivery.token is not None:
                    self._leases.hold(self.invocation_id, self.delivery.token)
            return None

    def close(self) -> None:
        """The message's handling ended (normally or not): the window makes no delivery now,
        and a lease the delivery granted is not renewed any more."""
        with self._lock:
            self._make = None
            if self.delivery is not None:
                self._leases.drop(self.invocation_id, self.delivery.token)

    def __call__(self) -> bool:
        """At the pass's frontier: may the pass go on (its state is the empty one)?"""
        try:
            return self.fresh(self.deliver())
        except Exception:  # kept in self.error
            return False

    @staticmethod
    def fresh(delivery: Delivery) -> bool:
        """The delivery granted the lease on the empty state the pass assumed."""
        return empty_state(delivery)


class Window:
    """Makes the delivery of first passes still running a while after they started, so they
    show ``running`` and their lease is renewed (see :class:`~.leases.LeaseKeeper`).

    One thread per process (dramatiq forks its worker processes) that looks every half
    window: watching a pass costs an append, no wake-up.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._queue: collections.deque[tuple[float, Gate]] = collections.deque()
        self._pid = 0
        self._lock = threading.Lock()

    def watch(self, gate: Gate) -> None:
        self._queue.append((time.monotonic() + self.window_s, gate))  # deque.append is atomic
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    threading.Thread(target=self._run, name="encore-first-pass-window", daemon=True).start()

    def _run(self) -> None:
        pid = os.getpid()
        while pid == os.getpid():
            time.sleep(self.window_s / 2)
            now = time.monotonic()
            # Every pass waits the same window: deadlines come in order.
            while self._queue and self._queue[0][0] <= now:
                _, gate = self._queue.popleft()
                if not gate.made:
                    with contextlib.suppress(Exception):  # kept in gate.error: the runtime raises it
                        gate.deliver()


class Resume:
    """The delivery of a result to a parent whose snapshot this process holds, sent ahead.

    The parent's pass replays its cached snapshot while the delivery is on its way; at the
    pass's frontier (see :meth:`PassState._at_frontier`) the gate reads the delivery. It
    confirms the pass when the delivery granted the lease and returned the journal from
    where the snapshot ends, holding only entries that arrived from outside (results,
    signals, a cancel): the snapshot is extended with them and the pass goes on.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        sent: Callable[[], Delivery],
        leases: LeaseKeeper,
        invocation_id: str,
    ) -> None:
        self.snapshot = snapshot
        self._sent: Callable[[], Delivery] | None = sent
        self._leases = leases
        self._invocation_id = invocation_id
        self._delivery: Delivery | None = None
        self.error: Exception | None = None
        self.confirmed: bool | None = None

    def delivery(self) -> Delivery:
        """Read the delivery's reply (once)."""
        if self._sent is not None:
            sent, self._sent = self._sent, None
            self._delivery = sent()
            if self._delivery.token is not None:
                self._leases.hold(self._invocation_id, self._delivery.token)
        assert self._delivery is not None
        return self._delivery

    def drop(self) -> None:
        """The pass is over: a lease the delivery granted is not renewed any more."""
        if self._delivery is not None:
            self._leases.drop(self._invocation_id, self._delivery.token)

    def confirm(self) -> bool:
        """Whether the pass counts; the first call extends the snapshot when it does."""
        if self.confirmed is None:
            delivery = self.delivery()
            self.confirmed = (
                delivery.token is not None
                and delivery.entries is not None
                and delivery.loaded_from == self.snapshot.length
                and self.snapshot.extend(delivery.entries)
            )
        return self.confirmed

    def __call__(self) -> bool:
        try:
            return self.confirm()
        except Exception as exc:  # called from user code: the runtime raises it after the pass
            self.error = exc
            self.confirmed = False
            return False
