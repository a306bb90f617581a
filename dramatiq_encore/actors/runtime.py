"""The I/O around the pure engine: one message in, state committed, messages out.

Per message: record the trigger and take the lease (one ``deliver``), run the pass, then
commit it and release the lease in one atomic step, and publish what it decided: the
children's starts and the result to the parent go out while the commit is on its way (see
:meth:`Runtime._publish_ahead`), timer wake-ups, cancels and callbacks after it. Every
message stays unacked until then: a crash anywhere redelivers it, its trigger is then a
duplicate, and :meth:`Runtime._repair` re-sends what that trigger's pass should have sent
(children not created yet, its pending timers, a cancel's cascade, a finished child's result).

The round trips are kept off the path from one step to the next where that is safe (see
:mod:`.speculation`): a child's first pass runs before its delivery, a parent replays its
cached snapshot while the result's delivery is on its way, and a leaf child whose parent
runs on its own queue resumes the parent in place instead of sending it a message.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dramatiq.broker import MessageProxy
from dramatiq.middleware import Retries
from dramatiq.middleware.shutdown import Shutdown
from dramatiq.threading import Interrupt

from ..errors import EncoreError, MisuseError, PayloadTooLarge, WorkflowIdConflict
from ..state.backend import Commit, CommitResult, Delivery, Trigger
from ..state.models import FINISHED, InvocationMeta, InvocationRecord, Outcome
from .codec import ArgumentError, ResultError, check_size
from .context import WorkflowContext
from .leases import LeaseKeeper
from .messages import (
    DUE_SLACK_S,
    FRESH,
    NUDGES,
    RESENT,
    AnyEnvelope,
    CancelEnvelope,
    SignalEnvelope,
    StartEnvelope,
    TimerEnvelope,
    read_envelope,
)
from .outbox import Outbox
from .overlap import Beside
from .pass_state import CANCEL_STREAM
from .records import CALLBACKS, next_run, start_record
from .replay import PassOutcome, Snapshot, error_info, run_pass
from .speculation import Gate, Resume, Window

if TYPE_CHECKING:
    from ..app import Encore
    from .task import Task

logger = logging.getLogger(__name__)

CACHE_SIZE = 1024
# A signal or cancel for an invocation no worker has created yet is re-sent with backoff
# (about a minute in all) before it is dropped: its start may still be on the way.
UNKNOWN_NUDGES = 20


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Runtime:
    """Processes every message of every task bound to one :class:`Encore` app."""

    def __init__(self, app: Encore) -> None:
        self.app = app
        self.state = app.state
        self.leases = LeaseKeeper(app.state)
        self.outbox = Outbox(app)
        # A child's first pass still running this long has its delivery made by the window
        # (the record then shows "running"); well within the lease, which it then renews.
        self._window = Window(min(0.5, self.state.lease_ms / 5000))
        self._beside = Beside()
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
            self._nudge(message, transient=True)
        finally:
            # The record keeps the callbacks and fires them once, at completion; dramatiq's
            # Callbacks middleware must not fire them for this pass. Removed only now, so a
            # re-sent copy (above) still carries them when the record could not be written.
            for name in CALLBACKS:
                message.options.pop(name, None)

    def _handle(
        self, task: Task[Any, Any], message: MessageProxy, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            envelope = read_envelope(message.options, message.message_id, task.name)
            if isinstance(envelope, StartEnvelope) and envelope.parent is None:
                # A child's arguments were checked by its parent's pass; a producer's are not.
                self._refuse_pipelines(task, message)
                check_size(
                    f"arguments of {task.name} (message {message.message_id})",
                    [args, kwargs],
                    self.app.settings.max_payload,
                )
        except EncoreError as exc:
            # Dead-letter at once, whatever the task's retry policy: a retry would fail the same way.
            message.options["throws"] = (type(exc),)
            logger.error("dead-lettering message %s: %s", message.message_id, exc)
            raise
        if self._not_here(task, envelope, message):
            return
        record = None
        if isinstance(envelope, StartEnvelope):
            record = start_record(task, message, envelope, list(args), kwargs)
        trigger = envelope.trigger()
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
                first = (snapshot, outcome, False)
                self._drive(task, invocation_id, delivery, cached, trigger.key, message, first=first)
                return True
        finally:
            self.leases.drop(invocation_id)
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
        """Act on a delivery: drive the invocation when it granted the lease, else re-send the
        message later (the lease is held) or repair what a duplicate trigger's pass sent."""
        if delivery.conflict:
            logger.error("%s", WorkflowIdConflict(invocation_id, task.name))
            return
        if not delivery.exists:
            logger.warning("dropping a %s message for unknown invocation %s", trigger.kind, invocation_id)
            return
        if delivery.token is None:
            if delivery.locked:
                self._nudge(message, fresh=not delivery.duplicate)
            elif delivery.duplicate and not self._fresh_copy(message):
                self._repair(invocation_id, trigger.key)
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
        otherwise it is abandoned (a leaf's result already sent counts as one more run of an
        at-least-once body, DESIGN 2.8) and the delivery is handled as usual.
        """
        invocation_id = record.invocation_id
        snapshot = Snapshot(InvocationMeta(record=record, status="running"))
        gate = Gate(self.state, self.leases, invocation_id, trigger, record)
        self._window.watch(gate)
        try:
            outcome = self._pass(task, snapshot, trigger.key, gate=gate)
            published = False
            retries = outcome.retryable and self._will_retry(task, message, outcome.exception)
            parent_task = self._local_parent(task, record)
            if not gate.made and outcome.finished and not retries and parent_task is not None:
                # A leaf whose parent runs on this queue: record it, then resume the parent here.
                if self._finish_first_pass(gate, snapshot, outcome):
                    self._publish(snapshot, outcome)
                    self._resume_here(parent_task, record, self._outcome(snapshot, outcome))
                    return
            elif not gate.made and outcome.finished and not retries:
                # A leaf: one round trip records it, sent beside the publish of its result to
                # its parent (which waits for its confirm), so the parent does not meet it.
                pending = self._beside.submit(self._finish_first_pass, gate, snapshot, outcome)
                try:
                    self._publish_ahead(snapshot, outcome)
                    published = True
                finally:
                    finished = pending.result()
                if finished:
                    self._publish(snapshot, outcome)
                    return
            delivery = gate.deliver()  # raises a store error met at the frontier: see handle()
            if outcome.status == "abandoned" or not Gate.fresh(delivery):
                self._delivered(task, invocation_id, delivery, 0, trigger, message)
                return
            first = (snapshot, outcome, published)
            self._drive(task, invocation_id, delivery, 0, trigger.key, message, first=first)
        finally:
            gate.close()
            self.leases.drop(invocation_id)

    def _local_parent(self, task: Task[Any, Any], record: InvocationRecord) -> Task[Any, Any] | None:
        """The parent's task when a worker of this queue runs it too (same queue, same app)."""
        parent = record.parent
        if parent is None or parent.queue != task.queue_name:
            return None
        return self.app.tasks.get(parent.task)

    def _resume_here(self, parent_task: Task[Any, Any], record: InvocationRecord, outcome: Outcome) -> None:
        """Deliver a child's result to its parent in this thread: the message it would have
        sent is handled here instead, which saves a hop per step.

        Safe because the parent runs on the child's own queue, and nothing is lost: until
        the child's start message is acked, a crash redelivers it, and the finished child's
        repair sends its result again while the parent is active (see ``needs_result``): that
        duplicate runs the parent's stalled pass or repairs what the pass sent. When the
        parent's pass asks for a retry, or anything else stops it here, the result goes as a
        message after all, and the parent's own worker runs it under the parent's retry policy.
        """
        message = self.outbox.result_message(record, outcome)
        try:
            self._handle(parent_task, MessageProxy(message), (), {})
        except Exception:
            logger.debug("parent of %s not resumed in place; sending its result", record.invocation_id, exc_info=True)
            self.app.broker.enqueue(message)

    def _finish_first_pass(self, gate: Gate, snapshot: Snapshot, outcome: PassOutcome) -> bool:
        return gate.finish(self._commit(snapshot, outcome)) is not None

    def _not_here(self, task: Task[Any, Any], envelope: AnyEnvelope, message: MessageProxy) -> bool:
        """True when the message is not delivered here: a timer wake-up that is early (sent on
        with the remaining delay), a signal or cancel for another task's invocation (forwarded
        to its actor) or for one not created yet (re-sent later)."""
        if isinstance(envelope, TimerEnvelope):
            if envelope.due - time.time() <= DUE_SLACK_S:
                return False
            if self.state.is_waiting_on(envelope.invocation_id, envelope.step):
                self.outbox.send_timer(task.queue_name, task.name, envelope)
            return True
        if not isinstance(envelope, SignalEnvelope | CancelEnvelope):
            return False
        meta = self.state.get_meta(envelope.invocation_id)
        if meta is None:
            nudges = int(message.options.get(NUDGES, 0))
            if nudges < UNKNOWN_NUDGES:
                self._nudge(message, transient=True)
            else:
                logger.warning("dropping a %s message for unknown invocation %s", envelope.kind, envelope.invocation_id)
            return True
        if meta.record.task != task.name:
            record = meta.record
            self.outbox.send(record.queue, record.task, [], {}, envelope.model_dump(mode="json"))
            return True
        return False

    def _refuse_pipelines(self, task: Task[Any, Any], message: MessageProxy) -> None:
        if "pipe_target" in message.options:
            raise MisuseError(
                f"message {message.message_id!r} for {task.name!r} is part of a dramatiq pipeline; "
                "pipelines are not supported by encore tasks: compose steps with wf.execute_task"
            )

    # -- driving a held invocation ----------------------------------------------------------
    def _drive(
        self,
        task: Task[Any, Any],
        invocation_id: str,
        delivery: Delivery,
        cached: int,
        origin: str,
        message: MessageProxy,
        first: tuple[Snapshot, PassOutcome, bool] | None = None,
    ) -> None:
        """Run passes while holding the lease until one suspends or finishes.

        ``first`` is a pass already run (on a child's first delivery, see :meth:`_speculate`):
        its snapshot, its outcome and whether its messages ahead were sent.
        """
        token = delivery.token
        assert token is not None
        self.leases.hold(invocation_id, token)
        preloaded: Delivery | None = delivery
        try:
            while True:
                if first is not None:
                    snapshot, outcome, published = first
                    first = None
                else:
                    snapshot = self._snapshot(invocation_id, preloaded, cached)
                    outcome = self._pass(task, snapshot, origin)
                    published = False
                preloaded = None
                if outcome.retryable and self._will_retry(task, message, outcome.exception):
                    self.state.release(invocation_id, token)
                    assert outcome.exception is not None
                    raise outcome.exception  # dramatiq's Retries re-enqueues with backoff
                ahead = not outcome.context.data_writes
                seen = snapshot.length
                if ahead and not published:
                    # The commit is built and sent beside the publish, which waits for its
                    # confirm: the lease is free again well before the child's result arrives.
                    pending = self._beside.submit(self._commit_pass, invocation_id, token, snapshot, outcome)
                    try:
                        self._publish_ahead(snapshot, outcome)
                    finally:
                        committed = pending.result()
                else:
                    committed = self._commit_pass(invocation_id, token, snapshot, outcome)
                if not committed.ok and committed.rerun:
                    # Stale: a timer resolved a step this pass resolved itself. Nothing was
                    # written, so the snapshot is still the journal's prefix: run again.
                    self._remember(invocation_id, snapshot)
                    continue
                if not committed.ok:
                    logger.warning("invocation %s: lease lost before commit; re-sending its message", invocation_id)
                    self._nudge(message)
                    return
                if not ahead:
                    self._publish_ahead(snapshot, outcome)
                self._publish(snapshot, outcome)
                if outcome.finished:
                    return
                if outcome.status != "continued":  # a new run loads its own journal
                    if committed.appended_at is not None and committed.appended_at == seen:
                        snapshot.extend_own(outcome.context.entries)  # nothing arrived in between
                    self._remember(invocation_id, snapshot)
                if not committed.rerun:
                    return
        finally:
            self.leases.drop(invocation_id)

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
        record = snapshot.meta.record
        read = functools.partial(self.state.read_data, record.identity.workflow_id)
        ctx = WorkflowContext(
            snapshot, read_data=read, clock=_utc_now, origin=origin, max_payload=self.app.settings.max_payload
        )
        ctx.gate = gate
        try:
            args, kwargs = task.codec.load_args(record.args, record.kwargs)
        except ArgumentError as exc:
            return PassOutcome("failed", ctx, error=error_info(exc), exception=exc)
        try:
            outcome = run_pass(ctx, task.fn, args, kwargs)
        except Interrupt as exc:  # dramatiq's time limit; a shutdown propagates
            if isinstance(exc, Shutdown):
                raise
            return PassOutcome("failed", ctx, error=error_info(exc), exception=exc, retryable=True)
        try:
            if outcome.status == "succeeded":
                outcome.value = task.codec.dump_result(outcome.value)
                check_size(f"result of {task.name}", outcome.value, self.app.settings.max_payload)
            elif outcome.continued is not None:
                args, kwargs = task.codec.dump_args(*outcome.continued)
                check_size(f"arguments of {task.name}", [args, kwargs], self.app.settings.max_payload)
                outcome.value = next_run(record, args, kwargs, ctx.last_step)
        except (ResultError, PayloadTooLarge, ArgumentError) as exc:
            return PassOutcome("failed", ctx, error=error_info(exc), exception=exc)
        return outcome

    def _will_retry(self, task: Task[Any, Any], message: MessageProxy, exc: BaseException | None) -> bool:
        """Dramatiq's own retry rule (Retries middleware), asked before it runs."""
        middleware = next((m for m in self.app.broker.middleware if isinstance(m, Retries)), None)
        if middleware is None or exc is None:
            return False
        options = task.actor.options
        throws = message.options.get("throws") or options.get("throws")
        if throws and isinstance(exc, throws):
            return False
        retries = message.options.get("retries", 0)
        retry_when = options.get("retry_when", middleware.retry_when)
        if retry_when is not None:
            return bool(retry_when(retries, exc))
        max_retries = message.options.get("max_retries", options.get("max_retries", middleware.max_retries))
        return max_retries is None or retries < max_retries

    def _commit_pass(self, invocation_id: str, token: str, snapshot: Snapshot, outcome: PassOutcome) -> CommitResult:
        return self.state.commit(invocation_id, token, self._commit(snapshot, outcome))

    @staticmethod
    def _outcome(snapshot: Snapshot, outcome: PassOutcome) -> Outcome:
        if outcome.status == "succeeded":
            return Outcome(ok=True, value=outcome.value, invocation_id=snapshot.meta.record.invocation_id)
        failing = getattr(outcome.exception, "invocation_id", "") or snapshot.meta.record.invocation_id
        return Outcome(ok=False, error=outcome.error, invocation_id=failing)

    def _commit(self, snapshot: Snapshot, outcome: PassOutcome) -> Commit:
        ctx = outcome.context
        data = {snapshot.meta.record.identity.workflow_id: ctx.data_writes} if ctx.data_writes else {}
        if outcome.status == "continued":
            carried = [signal.model_dump_json() for signal in ctx.unconsumed_signals()]
            return Commit(entries=carried, status="running", data=data, seen=snapshot.length, reset=outcome.value)
        return Commit(
            entries=[entry.model_dump_json() for entry in ctx.entries],
            status=outcome.status,
            outcome=self._outcome(snapshot, outcome) if outcome.finished else None,
            waiting=ctx.waiting,
            data=data,
            signals=ctx.waiting_signals,
            wake_any=ctx.wake_any,
            claims=ctx.claims,
            seen=snapshot.length,
        )

    # -- messages out -----------------------------------------------------------------------
    def _publish_ahead(self, snapshot: Snapshot, outcome: PassOutcome) -> None:
        """With the commit (sent beside it): the messages on the workflow's critical path.

        Sending the children's starts and the result to the parent without waiting for the
        commit takes its round trip off the path from one step to the next. It is safe because a receiver
        never depends on this commit: a child's start carries everything the child needs, a
        result carries its outcome, a result that reaches a parent whose lease is still held
        is recorded at once (the holder's commit then reruns the pass), and ids are
        deterministic, so a pass that must run again sends the same messages, which are
        deduplicated. A crash before the commit leaves the trigger unacked: its redelivery
        runs the pass again. A pass that wrote workflow data sends them after its commit
        instead: the child (or the parent) must see that data when it runs.
        """
        record = snapshot.meta.record
        self.outbox.start_children(record, outcome.context.new_steps)
        if outcome.finished and record.parent is not None:
            self.outbox.send_result(record, self._outcome(snapshot, outcome))

    def _publish(self, snapshot: Snapshot, outcome: PassOutcome) -> None:
        """After the commit: the pass's timers, a cancel's cascade, the completion callbacks."""
        record = snapshot.meta.record
        ctx = outcome.context
        self.outbox.start_timers(record, ctx.new_timers)
        if ctx.cancel_raised:
            reason = snapshot.cancel.reason if snapshot.cancel is not None else ""
            self.outbox.cancel_children(snapshot.pending_steps(), reason)
        if outcome.finished:
            self._finished(record, outcome.status, self._outcome(snapshot, outcome))

    def _finished(self, record: InvocationRecord, status: str, outcome: Outcome) -> None:
        logger.debug(
            "invocation %s of %s (workflow %s) %s",
            record.invocation_id,
            record.task,
            record.identity.workflow_id,
            status,
        )
        self.outbox.callback(record, outcome)

    @staticmethod
    def _fresh_copy(message: MessageProxy) -> bool:
        """A re-sent copy of a trigger that its first delivery recorded, delivered for the first
        time: whoever held the lease then answers for the trigger's effects, so there is nothing
        to repair (and a repair loads the whole journal). A redelivery (after a crash of a worker
        that may have driven a pass with this copy) is repaired as usual."""
        return bool(message.options.get(FRESH)) and not getattr(message, "redelivered", False)

    def _nudge(self, message: MessageProxy, transient: bool = False, fresh: bool = False) -> None:
        """Re-send a copy shortly: the lease is held (contention), was lost, or the store is down.

        Raising ``Retry`` would consume the user's ``max_retries``; a delayed copy does not.
        """
        nudges = int(message.options.get(NUDGES, 0))
        base, cap = (100, 5_000) if transient else (20, 1_000)
        delay = min(base * 2 ** min(nudges, 16), cap) + random.randint(0, 20)
        options = {NUDGES: nudges + 1, FRESH: fresh or bool(message.options.get(FRESH))}
        self.app.broker.enqueue(message.copy(options=options), delay=delay)

    def _repair(self, invocation_id: str, trigger_key: str) -> None:
        """A trigger seen before: re-send what its pass sent, in case a crash lost it."""
        meta, entries = self.state.load(invocation_id, 0)
        if meta is None:
            return
        record = meta.record
        if meta.status in FINISHED:
            parent = record.parent
            if parent is not None and self.state.needs_result(parent.invocation_id):
                self.outbox.send_result(record)
            return
        snapshot = Snapshot(meta)
        snapshot.apply(entries)
        candidates = [step for step in snapshot.pending_steps() if step.origin == trigger_key]
        present = self.state.existing([step.child for step in candidates])
        missing = [step for step, seen in zip(candidates, present, strict=False) if not seen]
        self.outbox.start_children(record, missing, resent=True)
        # A timer message may be sent twice: its trigger key resolves the step once.
        self.outbox.start_timers(record, [timer for timer in snapshot.pending_timers() if timer.origin == trigger_key])
        if CANCEL_STREAM in snapshot.values and snapshot.cancel is not None:
            self.outbox.cancel_children(snapshot.pending_steps(), snapshot.cancel.reason)
