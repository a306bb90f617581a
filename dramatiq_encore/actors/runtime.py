"""The I/O around the pure engine: one message in, state committed, messages out.

Per message: check it and record its trigger, taking the lease (one ``deliver``, see
:mod:`.mailbox` for what happens when no pass is granted), run the pass, then commit it and
release the lease in one atomic step, and only then publish what it decided: the
children's starts, the result to the parent, timer wake-ups, cancels and callbacks. The
receivers check each against what the commit recorded (a start counts only for a step its
parent recorded, a result only with the outcome its child recorded). Every message stays
unacked until then: a crash anywhere redelivers it, its trigger is then a duplicate, and
:meth:`.Mailbox.repair` re-sends what that trigger's pass should have sent (children not
created yet, its pending timers, a cancel's cascade, a finished child's result).

The round trips are kept off the path from one step to the next where that is safe (see
:mod:`.speculation`): a child's first pass runs before its delivery, a parent replays its
cached snapshot while the result's delivery is on its way, and a leaf child whose parent
runs on its own queue resumes the parent in place instead of sending it a message.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dramatiq.broker import MessageProxy

from ..state.backend import CommitResult, Delivery, Trigger
from ..state.models import InvocationMeta, InvocationRecord, Outcome
from . import passes
from .leases import LeaseKeeper
from .mailbox import Mailbox
from .messages import NUDGES, RESENT, StartEnvelope
from .outbox import Outbox
from .records import CALLBACKS, start_record
from .replay import PassOutcome, Snapshot
from .speculation import Gate, Resume, Window

if TYPE_CHECKING:
    from ..app import Encore
    from .task import Task

logger = logging.getLogger(__name__)

CACHE_SIZE = 1024
# A signal or cancel for an invocation no worker has created yet is re-sent with backoff
# (about a minute in all) before it is dropped: its start may still be on the way.
UNKNOWN_NUDGES = 20


class Runtime:
    """Processes every message of every task bound to one :class:`Encore` app."""

    def __init__(self, app: Encore) -> None:
        self.app = app
        self.state = app.state
        self.leases = LeaseKeeper(app.state)
        self.outbox = Outbox(app)
        self.mailbox = Mailbox(app, self.outbox)
        # A child's first pass still running this long has its delivery made by the window
        # (the record then shows "running"); well within the lease, which it then renews.
        self._window = Window(min(0.5, self.state.lease_ms / 5000))
        # Snapshots of recently driven invocations: a pass loads only the journal's tail.
        self._cache: OrderedDict[str, Snapshot] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- entry point ----------------------------------------------------------------------
    def handle(
        self, task: Task[Any, Any], message: MessageProxy, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            self._handle(task, message, args, kwargs)
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

    def _handle(
        self, task: Task[Any, Any], message: MessageProxy, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        envelope = self.mailbox.admit(task, message, args, kwargs)
        if self.mailbox.elsewhere(task, envelope, message):
            return
        record = None
        if isinstance(envelope, StartEnvelope):
            record = start_record(task, message, envelope, list(args), kwargs)
        trigger = self.mailbox.trigger(envelope)
        invocation_id = envelope.invocation_id
        if record is not None and record.parent is not None and self._first_delivery(message):
            self._speculate(task, record, trigger, message)
            return
        cached, run = self._cached(invocation_id)
        if cached and trigger.kind == "result" and self._resume(task, invocation_id, trigger, message, cached, run):
            return
        delivery = self.state.deliver(invocation_id, trigger, record, load_from=cached, run=run)
        self._delivered(task, invocation_id, delivery, cached, trigger, message)

    def _resume(
        self, task: Task[Any, Any], invocation_id: str, trigger: Trigger, message: MessageProxy, cached: int, run: int
    ) -> bool:
        """Replay the cached snapshot while the result's delivery is on its way (see
        :class:`~.speculation.Resume`); False when another thread took the snapshot meanwhile."""
        with self._cache_lock:
            snapshot = self._cache.pop(invocation_id, None)
        # Only for the result of a step the snapshot waits on: a late duplicate is not replayed.
        step = trigger.step
        if snapshot is None or snapshot.length != cached or step not in snapshot.steps or step in snapshot.results:
            if snapshot is not None:
                self._remember(invocation_id, snapshot)
            return False
        sent = self.state.deliver_soon(invocation_id, trigger, None, cached, run)
        resume = Resume(snapshot, sent, self.leases, invocation_id)
        try:
            try:
                outcome = self._pass(task, snapshot, trigger.key, gate=resume)
            finally:
                delivery = resume.delivery()  # read the reply whatever happened
            if resume.error is not None:
                raise resume.error  # a store error met at the frontier: see handle()
            if outcome.status != "abandoned" and resume.confirm():
                self._drive(task, invocation_id, delivery, cached, trigger.key, message, first=(snapshot, outcome))
                return True
        finally:
            resume.drop()
        self._remember(invocation_id, snapshot)  # not extended: still the journal's prefix
        self._delivered(task, invocation_id, delivery, cached, trigger, message)
        return True

    def _delivered(
        self,
        task: Task[Any, Any],
        invocation_id: str,
        delivery: Delivery,
        cached: int,
        trigger: Trigger,
        message: MessageProxy,
    ) -> None:
        """Act on a delivery: drive the invocation when it granted the lease, else settle the
        message (see :meth:`.Mailbox.settle`)."""
        if delivery.token is None:
            self.mailbox.settle(task, invocation_id, delivery, trigger, message)
            return
        self._drive(task, invocation_id, delivery, cached, trigger.key, message)

    # -- a child's first delivery: run first, read the state at the first wf operation -------
    @staticmethod
    def _first_delivery(message: MessageProxy) -> bool:
        """A start message delivered for the first time: not redelivered after a crash, not a
        copy re-sent by a nudge or a repair, not a retry. Its invocation almost always does not
        exist yet."""
        options = message.options
        redelivered = getattr(message, "redelivered", False)
        return not (redelivered or options.get(NUDGES) or options.get(RESENT) or options.get("retries"))

    def _speculate(
        self, task: Task[Any, Any], record: InvocationRecord, trigger: Trigger, message: MessageProxy
    ) -> None:
        """Run a child's first pass while its delivery is on its way (see :class:`~.speculation.Gate`).

        The pass counts only when the delivery finds the empty state the pass assumed;
        otherwise it is abandoned and the delivery is handled as usual (a body run this way
        counts as one more run of an at-least-once body, DESIGN 2.8).
        """
        invocation_id = record.invocation_id
        snapshot = Snapshot(InvocationMeta(record=record, status="running"))
        gate = Gate(self.state, self.leases, invocation_id, trigger, record)
        self._window.watch(gate)
        try:
            outcome = self._pass(task, snapshot, trigger.key, gate=gate)
            retries = outcome.retryable and self._will_retry(task, message, outcome.exception)
            if not gate.made and outcome.finished and not retries and self._finish_first_pass(gate, snapshot, outcome):
                # A leaf, recorded in one round trip: its parent is resumed here when it runs on
                # this queue, else sent the result (its store reads the outcome just recorded).
                parent_task = self._local_parent(task, record)
                self._publish(snapshot, outcome, result=parent_task is None)
                if parent_task is not None:
                    self._resume_here(parent_task, record)
                return
            delivery = gate.deliver()  # raises a store error met at the frontier: see handle()
            if outcome.status == "abandoned" or not Gate.fresh(delivery):
                self._delivered(task, invocation_id, delivery, 0, trigger, message)
                return
            self._drive(task, invocation_id, delivery, 0, trigger.key, message, first=(snapshot, outcome))
        finally:
            gate.close()

    def _local_parent(self, task: Task[Any, Any], record: InvocationRecord) -> Task[Any, Any] | None:
        """The parent's task when a worker of this queue runs it too (same queue, same app)."""
        parent = record.parent
        if parent is None or parent.queue != task.queue_name:
            return None
        return self.app.tasks.get(parent.task)

    def _resume_here(self, parent_task: Task[Any, Any], record: InvocationRecord) -> None:
        """Deliver a child's result to its parent in this thread: the message it would have
        sent is handled here instead, which saves a hop per step.

        Safe because the parent runs on the child's own queue, and nothing is lost: until
        the child's start message is acked, a crash redelivers it, and the finished child's
        repair sends its result again while the parent is active (see ``needs_result``): that
        duplicate runs the parent's stalled pass or repairs what the pass sent. When the
        parent's pass asks for a retry, or anything else stops it here, the result goes as a
        message after all, and the parent's own worker runs it under the parent's retry policy.
        """
        message = self.outbox.result_message(record)
        try:
            self._handle(parent_task, MessageProxy(message), (), {})
        except Exception:
            logger.debug("parent of %s not resumed in place; sending its result", record.invocation_id, exc_info=True)
            self.app.broker.enqueue(message)

    def _finish_first_pass(self, gate: Gate, snapshot: Snapshot, outcome: PassOutcome) -> bool:
        return gate.finish(passes.commit_of(snapshot, outcome)) is not None

    # -- driving a held invocation ----------------------------------------------------------
    def _drive(
        self,
        task: Task[Any, Any],
        invocation_id: str,
        delivery: Delivery,
        cached: int,
        origin: str,
        message: MessageProxy,
        first: tuple[Snapshot, PassOutcome] | None = None,
    ) -> None:
        """Run passes while holding the lease until one suspends or finishes.

        ``first`` is a pass already run (on a child's first delivery, see :meth:`_speculate`):
        its snapshot and its outcome.
        """
        token = delivery.token
        assert token is not None
        self.leases.hold(invocation_id, token)
        preloaded: Delivery | None = delivery
        try:
            while True:
                if first is not None:
                    (snapshot, outcome), first = first, None
                else:
                    snapshot = self._snapshot(invocation_id, preloaded, cached)
                    outcome = self._pass(task, snapshot, origin)
                preloaded = None
                if outcome.retryable and self._will_retry(task, message, outcome.exception):
                    self.leases.drop(invocation_id, token)
                    self.state.release(invocation_id, token)
                    assert outcome.exception is not None
                    raise outcome.exception  # dramatiq's Retries re-enqueues with backoff
                seen = snapshot.length
                committed = self._commit_and_start(invocation_id, token, snapshot, outcome)
                if not committed.ok and committed.rerun:
                    # Stale: a timer resolved a step this pass resolved itself. Nothing was
                    # written, so the snapshot is still the journal's prefix: run again.
                    self._remember(invocation_id, snapshot)
                    continue
                if not committed.ok:
                    logger.warning("invocation %s: lease lost before commit; re-sending its message", invocation_id)
                    self.mailbox.nudge(message)
                    return
                if not self._committed(invocation_id, token, snapshot, outcome, committed, seen):
                    return
        finally:
            self.leases.drop(invocation_id, token)

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
        self._publish(snapshot, outcome)
        if outcome.finished:
            return False
        if outcome.status != "continued":  # a new run loads its own journal
            if committed.appended_at is not None and committed.appended_at == seen:
                snapshot.extend_own(outcome.context.entries)  # nothing arrived in between
            self._remember(invocation_id, snapshot)
        return committed.rerun

    def _commit_and_start(
        self, invocation_id: str, token: str, snapshot: Snapshot, outcome: PassOutcome
    ) -> CommitResult:
        """Commit the pass, then send its children's starts: a start counts only for a step its
        parent recorded, so it never overtakes the commit that records it."""
        committed = self._commit_pass(invocation_id, token, snapshot, outcome)
        if committed.ok:
            self.outbox.start_children(snapshot.meta.record, outcome.context.new_steps)
        return committed

    def _cached(self, invocation_id: str) -> tuple[int, int]:
        """The length and the run of the cached snapshot (0, 0 when none)."""
        with self._cache_lock:
            snapshot = self._cache.get(invocation_id)
            return (0, 0) if snapshot is None else (snapshot.length, snapshot.meta.record.run)

    def _snapshot(self, invocation_id: str, preloaded: Delivery | None = None, cached: int = 0) -> Snapshot:
        """The invocation's snapshot: the cached prefix plus the journal's tail.

        The snapshot is taken out of the cache: the pass owns it, and :meth:`_drive` puts it
        back once the pass committed (extended with the pass's own entries).

        ``preloaded`` carries the tail that ``deliver`` returned with the lease; it is used
        when the cache still ends where it ended when the delivery asked (another thread of
        this process may have advanced it meanwhile), otherwise the tail is loaded again.
        """
        with self._cache_lock:
            snapshot = self._cache.pop(invocation_id, None)
        length = 0 if snapshot is None else snapshot.length
        if preloaded is not None and preloaded.entries is not None and length == cached:
            if preloaded.loaded_from == 0:
                assert preloaded.record is not None
                snapshot = Snapshot(InvocationMeta(record=preloaded.record, status="running"))
            if snapshot is not None and snapshot.length == preloaded.loaded_from:
                snapshot.apply(list(preloaded.entries))
                return snapshot
        start = length
        meta, tail = self.state.load(invocation_id, start)
        assert meta is not None, f"invocation {invocation_id} vanished while leased"
        if snapshot is None or snapshot.meta.record.seed != meta.record.seed:
            snapshot = Snapshot(meta)
            if start:
                _, tail = self.state.load(invocation_id, 0)
        snapshot.meta = meta
        snapshot.apply(tail)
        return snapshot

    def _remember(self, invocation_id: str, snapshot: Snapshot) -> Snapshot:
        with self._cache_lock:
            self._cache[invocation_id] = snapshot
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return snapshot

    def _pass(
        self, task: Task[Any, Any], snapshot: Snapshot, origin: str, gate: Callable[[], bool] | None = None
    ) -> PassOutcome:
        return passes.run(task, snapshot, origin, self.state, self.app.settings.max_payload, gate)

    def _will_retry(self, task: Task[Any, Any], message: MessageProxy, exc: BaseException | None) -> bool:
        return passes.will_retry(self.app.broker, task, message, exc)

    def _commit_pass(self, invocation_id: str, token: str, snapshot: Snapshot, outcome: PassOutcome) -> CommitResult:
        return self.state.commit(invocation_id, token, passes.commit_of(snapshot, outcome))

    # -- messages out -----------------------------------------------------------------------
    def _publish(self, snapshot: Snapshot, outcome: PassOutcome, result: bool = True) -> None:
        """After the commit: the result to the parent (whose store reads the outcome this commit
        recorded; ``result`` False when the parent is resumed in place), the pass's timers, a
        cancel's cascade, the completion callbacks."""
        record = snapshot.meta.record
        ctx = outcome.context
        self.outbox.start_timers(record, ctx.new_timers)
        if ctx.cancel_raised:
            reason = snapshot.cancel.reason if snapshot.cancel is not None else ""
            self.outbox.cancel_children(snapshot.pending_steps(), reason)
        if outcome.finished:
            if result and record.parent is not None:
                self.outbox.send_result(record)
            self._finished(record, outcome.status, passes.outcome_of(snapshot, outcome))

    def _finished(self, record: InvocationRecord, status: str, outcome: Outcome) -> None:
        logger.debug(
            "invocation %s of %s (workflow %s) %s",
            record.invocation_id,
            record.task,
            record.identity.workflow_id,
            status,
        )
        self.outbox.callback(record, outcome)
