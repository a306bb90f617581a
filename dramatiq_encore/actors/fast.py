"""The fast paths, behind one switch (``ENCORE_FAST_PATH``, on by default).

Each takes a message before the normal path (:meth:`.Runtime.deliver`) and either handles it
or says "fall back" (:meth:`FastPaths.handle` returns False), so the normal path stays whole
and correct without them; ``ENCORE_FAST_PATH=0`` turns them all off.

- **A child's first pass before its delivery.** A child's start delivered for the first time
  almost always finds no state, so its first pass runs at once, speculatively: it stops at
  its first ``wf`` operation (it holds no lease yet) and then falls back. A *leaf* (a child
  that finishes without one) is delivered and committed in one round trip
  (``finish_first_pass``, applied only to the empty state it assumed), then sends its result.
- **The record of a long first pass.** A first pass still running half a second in (a
  slow leaf) has its delivery made from the :class:`Window`'s thread, so its record reads
  ``running`` and a repair finds it (instead of starting it again); the pass itself never
  touches the store, and its outcome is then committed through the normal path.
- **Its parent resumed in place.** When such a leaf's parent runs on the leaf's own queue,
  the worker that ran the leaf handles the result itself instead of sending it as a message:
  a step costs one hop instead of two. Until the leaf's start message is acked (after the
  parent's pass), a crash redelivers it, and the finished leaf's repair sends its result
  again while the parent is active (``needs_result``).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from dramatiq.broker import MessageProxy
from dramatiq.middleware.shutdown import Shutdown
from dramatiq.threading import Interrupt

from ..observe import emit, logs
from ..state.backend import Commit, CommitResult, Delivery, FirstPass, Then, deliver_then_commit, empty_state
from ..state.models import InvocationMeta, InvocationRecord
from . import passes
from .mailbox import Letter
from .messages import NUDGES, RESENT, ResultEnvelope
from .pass_state import Needs
from .replay import Pass, PassOutcome, Snapshot, error_info

if TYPE_CHECKING:
    from .runtime import First, Runtime
    from .task import Task

logger = logging.getLogger(__name__)


def _nothing(needs: Needs) -> None:
    raise AssertionError(f"a pass that ended asked for {needs}")


def first_delivery(message: MessageProxy) -> bool:
    """A start message delivered for the first time: not redelivered after a crash, not a copy
    re-sent by a nudge or a repair, not a retry. Its invocation almost always does not exist."""
    options = message.options
    redelivered = getattr(message, "redelivered", False)
    return not (redelivered or options.get(NUDGES) or options.get(RESENT) or options.get("retries"))


class Recording:
    """The delivery of one speculative first pass, made by the window if the pass runs long."""

    def __init__(self, runtime: Runtime, letter: Letter) -> None:
        self._runtime = runtime
        self._letter = letter
        self._lock = threading.Lock()
        self._open = True
        self.delivery: Delivery | None = None

    def make(self) -> None:
        """The pass runs long: create the record (status ``running``) and keep its lease."""
        with self._lock:
            if not self._open or self.delivery is not None:
                return
            letter = self._letter
            try:
                self.delivery = self._runtime.state.deliver(
                    letter.invocation_id, letter.trigger, letter.record, load_from=0
                )
            except Exception:  # the store is down: the pass's own delivery will tell
                logger.debug("no early record for %s", letter.invocation_id, exc_info=True)
                return
            if self.delivery.token is not None:
                self._runtime.leases.hold(letter.invocation_id, self.delivery.token)

    def close(self) -> Delivery | None:
        """The pass ended: the delivery the window made, if any (its lease handed to the caller)."""
        with self._lock:
            self._open = False
            if self.delivery is not None and self.delivery.token is not None:
                self._runtime.leases.drop(self._letter.invocation_id, self.delivery.token)
            return self.delivery


class Window:
    """One thread per process (dramatiq forks its worker processes) that makes the deliveries of
    first passes still running ``seconds`` after they started."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._queue: collections.deque[tuple[float, Recording]] = collections.deque()
        self._pid = 0
        self._lock = threading.Lock()

    def watch(self, recording: Recording) -> Recording:
        self._queue.append((time.monotonic() + self.seconds, recording))  # deque.append is atomic
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    threading.Thread(target=self._run, name="encore-first-pass-window", daemon=True).start()
        return recording

    def _run(self) -> None:
        pid = os.getpid()
        while pid == os.getpid():
            time.sleep(self.seconds / 2)
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:  # every pass waits the same time
                self._queue.popleft()[1].make()


class FastPaths:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app = runtime.app
        self.state = runtime.state
        self.window = Window(min(0.5, runtime.state.lease_ms / 5000))

    def handle(self, task: Task[Any, Any], message: MessageProxy, letter: Letter) -> bool:
        """Handle the message on a fast path, or return False: the normal path takes it."""
        record = letter.record
        if record is None or record.parent is None or not first_delivery(message):
            return False
        return self._first_pass(task, message, letter, record)

    def _first_pass(
        self, task: Task[Any, Any], message: MessageProxy, letter: Letter, record: InvocationRecord
    ) -> bool:
        runtime, max_payload = self.runtime, self.app.settings.max_payload
        # What the pass logs is held until its speculation holds (dropped if it is abandoned).
        with logs.speculating() as speculation:
            timer = passes.PassTimer()
            snapshot = Snapshot(InvocationMeta(record=record, status="running"))
            step = passes.begin(task, snapshot, letter.trigger.key, max_payload, speculative=True, timer=timer)
            if isinstance(step, PassOutcome):
                return False  # its arguments do not decode: the normal path fails it
            result, made = self._speculate(step, letter)
            if isinstance(result, Needs):  # its first wf operation: the lease, on the empty state
                try:
                    delivery = made or self.state.deliver(letter.invocation_id, letter.trigger, record, load_from=0)
                except BaseException:  # the store failed (or a time limit hit): nothing of the pass counts
                    step.abandon()
                    raise
                if not _decided(speculation, empty_state(delivery)):
                    step.abandon()  # not the state it assumed (a duplicate): the normal path
                first: First | None = (snapshot, step, timer) if step.parked else None
                runtime.delivered(task, letter, delivery, 0, message, first=first)
                return True
            outcome = passes.complete(task, step, result, _nothing, max_payload)
            if made is not None:  # a long pass: its record exists; commit through the normal path
                first = (snapshot, outcome, timer) if _decided(speculation, empty_state(made)) else None
                runtime.delivered(task, letter, made, 0, message, first=first)
                return True
            return self._finished_first(task, message, letter, record, (snapshot, outcome, timer), speculation)

    def _speculate(self, step: Pass, letter: Letter) -> tuple[PassOutcome | Needs, Delivery | None]:
        """Start the pass (a leaf's whole body, or up to its first wf operation), with the
        window watching it: the pass's result, and the delivery the window made, if any."""
        recording = self.window.watch(Recording(self.runtime, letter))
        try:
            result = step.start()
        except Interrupt as exc:  # dramatiq's time limit (a shutdown propagates)
            if isinstance(exc, Shutdown):
                raise
            result = PassOutcome("failed", error=error_info(exc), exception=exc, retryable=True)
        finally:
            made = recording.close()
        return result, made

    def _finished_first(
        self,
        task: Task[Any, Any],
        message: MessageProxy,
        letter: Letter,
        record: InvocationRecord,
        first: tuple[Snapshot, PassOutcome, passes.PassTimer],
        speculation: logs.Speculation,
    ) -> bool:
        """A leaf that ended: record and commit it in one round trip, then send its result or
        resume its parent here."""
        runtime = self.runtime
        snapshot, outcome, timer = first
        if outcome.retryable and passes.will_retry(self.app.broker, task, message, outcome.exception):
            # A failed attempt that dramatiq retries: record the invocation, then let the normal
            # path release the lease and raise (the body does not run twice for one attempt).
            delivery = self.state.deliver(letter.invocation_id, letter.trigger, record, load_from=0)
            held = _decided(speculation, empty_state(delivery))
            runtime.delivered(task, letter, delivery, 0, message, first=first if held else None)
            return True
        parent_task = self._local_parent(task, record)
        parent = self._parent_letter(record) if parent_task is not None else None
        then = (
            None
            if parent is None
            else Then(parent.invocation_id, parent.trigger, *runtime.cache.position(parent.invocation_id))
        )
        delivery, committed, parent_delivery = self._finish(letter, record, passes.commit_of(snapshot, outcome), then)
        if not _decided(speculation, committed is not None):  # not the empty state it assumed: the normal path
            runtime.delivered(task, letter, delivery, 0, message)
            return True
        if delivery.verdict == "ok" and not delivery.duplicate:
            emit.started(record)  # this delivery created the invocation
        emit.pass_ended(snapshot, outcome.status, timer)
        runtime.publish(snapshot, outcome, result=parent_task is None)
        if parent_task is not None and parent is not None and then is not None:
            child = (record, outcome.status == "succeeded")
            self._resume_here(parent_task, child, parent, parent_delivery, then.load_from)
        return True

    def _parent_letter(self, record: InvocationRecord) -> Letter:
        """The letter a leaf's result message would bring its parent."""
        parent = record.parent
        assert parent is not None
        envelope = ResultEnvelope(invocation_id=parent.invocation_id, step=parent.step, child=record.invocation_id)
        return Letter(parent.invocation_id, envelope.trigger())

    def _finish(
        self, letter: Letter, record: InvocationRecord, commit: Commit, then: Then | None
    ) -> tuple[Delivery, CommitResult | None, Delivery | None]:
        if isinstance(self.state, FirstPass):
            return self.state.finish_first_pass(letter.invocation_id, letter.trigger, record, commit, then)
        return deliver_then_commit(self.state, letter.invocation_id, letter.trigger, record, commit, then)

    def _local_parent(self, task: Task[Any, Any], record: InvocationRecord) -> Task[Any, Any] | None:
        """The parent's task when a worker of this queue runs it too (same queue, same app)."""
        parent = record.parent
        if parent is None or parent.queue != task.queue_name:
            return None
        return self.app.tasks.get(parent.task)

    def _resume_here(
        self,
        parent_task: Task[Any, Any],
        child: tuple[InvocationRecord, bool],
        letter: Letter,
        delivery: Delivery | None,
        cached: int,
    ) -> None:
        """Hand a finished leaf's result to its parent in this thread, with the delivery made in
        the leaf's own round trip: the message it would have sent is handled here instead. When
        anything stops the parent's pass here (a retry, an error), the result goes as a message
        after all, under the parent's own policies. ``child``: the leaf's record, and whether
        it succeeded."""
        record = child[0]
        message = self.runtime.outbox.result_message(record)
        proxy = MessageProxy(message)
        logs.identify(letter.invocation_id)  # the parent's message, handled here
        try:
            if delivery is None:
                self.runtime.deliver(parent_task, letter, proxy)
            else:
                self.runtime.delivered(parent_task, letter, delivery, cached, proxy, child=child)
        except Exception:
            logger.debug("parent of %s not resumed in place; sending its result", record.invocation_id, exc_info=True)
            self.app.broker.enqueue(message)


def _decided(speculation: logs.Speculation, holds: bool) -> bool:
    """A speculative pass counts (``holds``: its records go out now) or not (they are dropped)."""
    if holds:
        speculation.release()
    else:
        speculation.discard()
    return holds
