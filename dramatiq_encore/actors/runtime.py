"""The normal path: one message in, state committed, messages out (``docs/protocol.md``).

Per message: read it at the door (:meth:`.Mailbox.open`), deliver its trigger to the state
store, which records it and grants the replay lease when the invocation can make progress
(one ``deliver``; see :meth:`.Mailbox.settle` for what happens when it grants none), run
passes while holding the lease (:meth:`Runtime.drive`), commit each and release the lease
in one atomic step, and only then publish what the pass decided: the children's starts, the
result to the parent, timer wake-ups, cancels and callbacks. Every message stays unacked
until then: a crash anywhere redelivers it, its trigger is then a duplicate, and
:meth:`.Mailbox.repair` re-sends what that trigger's pass should have sent.

The fast paths (:mod:`.fast`, ``ENCORE_FAST_PATH``) take a message before it reaches
:meth:`Runtime.deliver`, or fall back to it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from dramatiq.broker import MessageProxy

from ..broker_config.middleware import attach
from ..observe import emit, logs
from ..state.backend import CommitResult, Delivery
from ..state.models import InvocationRecord, Outcome
from . import passes
from .cache import SnapshotCache
from .leases import LeaseKeeper
from .mailbox import Letter, Mailbox
from .outbox import Outbox
from .pass_state import Needs
from .records import CALLBACKS
from .replay import Pass, PassOutcome, Snapshot

if TYPE_CHECKING:
    from ..app import Encore
    from .fast import FastPaths
    from .task import Task

logger = logging.getLogger(__name__)

#: A pass a fast path ran on the empty state a delivery found (see :meth:`Runtime.drive`).
First = tuple[Snapshot, PassOutcome | Pass, passes.PassTimer]


class Runtime:
    """Processes every message of every task bound to one :class:`Encore` app."""

    def __init__(self, app: Encore) -> None:
        self.app = app
        self.state = app.state
        self.leases = LeaseKeeper(app.state)
        self.outbox = Outbox(app)
        self.mailbox = Mailbox(app, self.outbox)
        self.cache = SnapshotCache(app.settings.cache_size)
        self.fast: FastPaths | None = None
        if app.settings.fast_path:
            from .fast import FastPaths

            self.fast = FastPaths(self)
        attach(app)  # the broker's middleware serves the app's metrics in worker processes

    # -- entry point ----------------------------------------------------------------------
    def handle(
        self, task: Task[Any, Any], message: MessageProxy, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        scope = logs.enter()  # the library's log records name the invocation from here on
        try:
            self.handle_once(task, message, args, kwargs)
        except self.state.transient_errors as exc:
            # The state store is briefly unreachable (restart, failover): try again later
            # without using up the task's max_retries. Nothing was committed by this pass.
            logger.warning(
                "state store %s unavailable (%s); message %s re-sent later",
                self.state.describe(),
                type(exc).__name__,
                message.message_id,
            )
            self.mailbox.nudge(message, transient=True)
        finally:
            # The record keeps the callbacks and fires them once, at completion; dramatiq's
            # Callbacks middleware must not fire them for this pass. Removed only now, so a
            # re-sent copy (above) still carries them when the record could not be written.
            for name in CALLBACKS:
                message.options.pop(name, None)
            logs.leave(scope)

    def handle_once(
        self, task: Task[Any, Any], message: MessageProxy, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        letter = self.mailbox.open(task, message, args, kwargs)
        if letter is None:
            return
        if self.fast is not None and self.fast.handle(task, message, letter):
            return
        self.deliver(task, letter, message)

    def deliver(self, task: Task[Any, Any], letter: Letter, message: MessageProxy) -> None:
        """Record the letter's trigger; the delivery returns the journal's tail with the lease."""
        cached, run = self.cache.position(letter.invocation_id)
        delivery = self.state.deliver(letter.invocation_id, letter.trigger, letter.record, load_from=cached, run=run)
        self.delivered(task, letter, delivery, cached, message)

    def delivered(
        self,
        task: Task[Any, Any],
        letter: Letter,
        delivery: Delivery,
        cached: int,
        message: MessageProxy,
        first: First | None = None,
        child: tuple[InvocationRecord, bool] | None = None,
    ) -> None:
        """Drive the invocation when the delivery granted the lease, else settle the message.
        ``child``: the record and outcome of the child whose result was delivered, if known."""
        resolved = self._recorded(letter, delivery, child)
        if delivery.token is None:
            self.mailbox.settle(task, letter.invocation_id, delivery, letter.trigger, message)
            return
        self.drive(task, letter.invocation_id, delivery, cached, letter.trigger.key, message, first, resolved)

    def _recorded(
        self, letter: Letter, delivery: Delivery, child: tuple[InvocationRecord, bool] | None
    ) -> tuple[int, float] | None:
        """Tell observers what the delivery recorded: an invocation created, a step resolved.
        Returns a resolved step and when, to describe from the snapshot the lease brings."""
        if delivery.verdict != "ok" or delivery.duplicate:
            return None
        trigger = letter.trigger
        if trigger.kind == "start" and letter.record is not None:
            emit.started(letter.record)
        elif trigger.kind in ("result", "timer") and trigger.step is not None:
            if delivery.token is not None:
                return trigger.step, time.time()
            emit.resolved_unheld(self.state, letter.invocation_id, trigger, time.time(), child)
        return None

    # -- driving a held invocation ----------------------------------------------------------
    def drive(
        self,
        task: Task[Any, Any],
        invocation_id: str,
        delivery: Delivery,
        cached: int,
        origin: str,
        message: MessageProxy,
        first: First | None = None,
        resolved: tuple[int, float] | None = None,
    ) -> None:
        """Run passes while holding the lease until one suspends or finishes.

        ``first`` is a pass a fast path ran on the empty state this delivery found: its
        snapshot and its outcome, or the pass itself, parked where it asked for the lease (and
        its timer). ``resolved``: the step the delivery resolved, and when.
        """
        token = delivery.token
        assert token is not None
        with self.leases.holding(invocation_id, token):
            preloaded: Delivery | None = delivery
            while True:
                if first is not None:
                    (snapshot, started, timer), first = first, None
                    outcome = self._first(task, snapshot, started)
                else:
                    snapshot = self.cache.take(self.state, invocation_id, preloaded, cached)
                    timer = self._identified(snapshot, resolved)
                    resolved = None
                    outcome = passes.run(
                        task, snapshot, origin, self.app.settings.max_payload, self.answer(snapshot), timer
                    )
                preloaded = None
                emit.pass_ended(snapshot, outcome.status, timer)
                if outcome.retryable and passes.will_retry(self.app.broker, task, message, outcome.exception):
                    self.state.release(invocation_id, token)
                    assert outcome.exception is not None
                    raise outcome.exception  # dramatiq's Retries re-enqueues with backoff
                seen = snapshot.length
                committed = self._commit_and_start(invocation_id, token, snapshot, outcome)
                if not committed.ok and committed.rerun:
                    # Stale: a timer resolved a step this pass resolved itself. Nothing was
                    # written, so the snapshot is still the journal's prefix: run again.
                    self.cache.put(invocation_id, snapshot)
                    continue
                if not committed.ok:
                    logger.warning("invocation %s: lease lost before commit; re-sending its message", invocation_id)
                    self.mailbox.nudge(message)
                    return
                if not self._committed(invocation_id, token, snapshot, outcome, committed, seen):
                    return

    @staticmethod
    def _identified(snapshot: Snapshot, resolved: tuple[int, float] | None) -> passes.PassTimer:
        """The snapshot a pass is about to run over is at hand: name its invocation in the
        logs, describe the step the delivery resolved; the pass's timer starts."""
        record = snapshot.meta.record
        logs.identify(record.invocation_id, record.identity.workflow_id)
        if resolved is not None:
            emit.resolved(snapshot, *resolved)
        return passes.PassTimer()

    def answer(self, snapshot: Snapshot) -> passes.Answer:
        """Answers to what a pass over ``snapshot`` that this drive runs may ask for: the lease
        (a fast path's pass, parked where it asked: held now) or a data value, read while the
        pass is parked (no store I/O happens while user code runs)."""
        workflow_id = snapshot.meta.record.identity.workflow_id

        def fetch(needs: Needs) -> Any:
            if needs.lease:
                return True
            assert needs.data is not None, needs
            return self.state.read_data(workflow_id, needs.data)

        return fetch

    def _first(self, task: Task[Any, Any], snapshot: Snapshot, started: PassOutcome | Pass) -> PassOutcome:
        """The fast path's pass: ended already, or parked where it asked for the lease, held now."""
        if isinstance(started, PassOutcome):
            return started
        return passes.complete(task, started, Needs(lease=True), self.answer(snapshot), self.app.settings.max_payload)

    def _commit_and_start(
        self, invocation_id: str, token: str, snapshot: Snapshot, outcome: PassOutcome
    ) -> CommitResult:
        """Commit the pass, then send its children's starts: a start counts only for a step its
        parent recorded, so it never overtakes the commit that records it."""
        committed = self.state.commit(invocation_id, token, passes.commit_of(snapshot, outcome))
        if committed.ok:
            self.outbox.start_children(snapshot.meta.record, outcome.new_steps)
        return committed

    def _committed(
        self,
        invocation_id: str,
        token: str,
        snapshot: Snapshot,
        outcome: PassOutcome,
        committed: CommitResult,
        seen: int,
    ) -> bool:
        """After a commit that applied: publish what the pass decided and keep its snapshot.
        True when the pass must run again (the commit kept the lease)."""
        if not committed.rerun:
            self.leases.drop(invocation_id, token)  # the commit released it
        emit.claimed(snapshot, outcome)
        self.publish(snapshot, outcome)
        if outcome.finished:
            return False
        if outcome.status != "continued":  # a new run loads its own journal
            if committed.appended_at is not None and committed.appended_at == seen:
                snapshot.extend_own(outcome.entries)  # nothing arrived in between
            self.cache.put(invocation_id, snapshot)
        return committed.rerun

    # -- messages out -----------------------------------------------------------------------
    def publish(self, snapshot: Snapshot, outcome: PassOutcome, result: bool = True) -> None:
        """After the commit: the result to the parent (whose store reads the outcome this commit
        recorded; ``result`` False when the parent is resumed in place), the pass's timers, a
        cancel's cascade, the completion callbacks."""
        record = snapshot.meta.record
        self.outbox.start_timers(record, outcome.new_timers)
        if outcome.cancel_raised:
            reason = snapshot.cancel.reason if snapshot.cancel is not None else ""
            self.outbox.cancel_children(snapshot.pending_steps(), reason)
        if outcome.finished:
            if result and record.parent is not None:
                self.outbox.send_result(record)
            self._finished(record, outcome.status, passes.outcome_of(snapshot, outcome))

    def _finished(self, record: InvocationRecord, status: str, outcome: Outcome) -> None:
        emit.finished(record, status)
        logger.debug(
            "invocation %s of %s (workflow %s) %s",
            record.invocation_id,
            record.task,
            record.identity.workflow_id,
            status,
        )
        self.outbox.callback(record, outcome)
