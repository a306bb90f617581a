"""What happens to a message instead of a pass: checks at the door, re-sends, dead letters, repairs.

A message is read (:meth:`Mailbox.open`: its envelope, its size, then the handler of its
kind: where it belongs, the trigger to deliver), then delivered to the state store; when
the store does not grant a pass, :meth:`Mailbox.settle` acts on its verdict:

- *refused* (the trigger contradicts what the invocation recorded: a forged result or timer,
  a start its parent's step did not record, a signal past the limit) and *unknown* (the store
  has no record of the invocation: marked lost) are dead-lettered at once, with the reason;
- *early* (a child's start before its parent's commit, a result before its child's) is re-sent
  shortly, a few times, then dead-lettered: whoever sent it too early sends it again;
- *due* (a timer before its recorded due time) is sent on to that time;
- *ignored* (a finished invocation, a step of an earlier run) is acked and forgotten;
- a duplicate trigger is *repaired*: what its pass should have sent is sent again.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from dramatiq.broker import MessageProxy

from ..errors import EncoreError, MisuseError, WorkflowIdConflict
from ..observe import logs
from ..state.backend import DUE_SLACK_S, Delivery, Trigger
from ..state.models import FINISHED, InvocationRecord
from .codec import check_size
from .messages import (
    FRESH,
    NUDGES,
    AnyEnvelope,
    CancelEnvelope,
    MalformedMessage,
    SignalEnvelope,
    StartEnvelope,
    TimerEnvelope,
    read_envelope,
)
from .pass_state import CANCEL_STREAM
from .poller import polled
from .records import start_record
from .replay import Snapshot

if TYPE_CHECKING:
    from ..app import Encore
    from .outbox import Outbox
    from .task import Task

logger = logging.getLogger(__name__)

# A signal or cancel for an invocation no worker has created yet is re-sent with backoff
# (about a minute in all) before it is given up: its start may still be on the way.
UNKNOWN_NUDGES = 20
# An early start or result is re-sent this many times (about 3 s in all): the commit it
# waits for lands within milliseconds, or its sender's message is redelivered and sends it again.
EARLY_NUDGES = 8


@dataclasses.dataclass(frozen=True)
class Letter:
    """A message read at the door: the invocation it is for, the trigger to deliver, and the
    record to create the invocation from (a start only)."""

    invocation_id: str
    trigger: Trigger
    record: InvocationRecord | None = None


class UntrustedMessage(MalformedMessage):
    """A well-formed message that contradicts what the invocation recorded (it was not sent by
    the engine for this invocation: forged, or meant for a state the store no longer has)."""


class Mailbox:
    """The door of every invocation's mailbox, for one :class:`~dramatiq_encore.Encore` app."""

    def __init__(self, app: Encore, outbox: Outbox) -> None:
        self.app = app
        self.state = app.state
        self.outbox = outbox

    # -- at the door ------------------------------------------------------------------------
    def open(
        self, task: Task[Any, Any], message: MessageProxy, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Letter | None:
        """Read a message: the letter to deliver, or None when it was dealt with here (sent on,
        forwarded, re-sent later). Dead-letters what cannot be read."""
        envelope = self._admit(task, message, args, kwargs)
        return self._DOOR[envelope.kind](self, task, message, envelope, args, kwargs)

    def _admit(
        self, task: Task[Any, Any], message: MessageProxy, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AnyEnvelope:
        """The message's envelope, or dead-letter it (bad envelope, pipeline, over the size limit)."""
        limit = self.app.settings.max_payload
        try:
            envelope = read_envelope(message.options, message.message_id, task.name)
            known = envelope.identity.workflow_id if isinstance(envelope, StartEnvelope) else None
            logs.identify(envelope.invocation_id, known)
            if isinstance(envelope, StartEnvelope) and envelope.parent is None:
                # A child's arguments were checked by its parent's pass; a producer's are not.
                self._refuse_pipelines(task, message)
                check_size(f"arguments of {task.name} (message {message.message_id})", [args, kwargs], limit)
            elif isinstance(envelope, SignalEnvelope):
                check_size(
                    f"payload of signal {envelope.name!r} (message {message.message_id})", envelope.payload, limit
                )
        except EncoreError as exc:
            self.dead_letter(message, exc)
        return envelope

    # One handler per message kind (messages.KINDS): what each reads at the door.
    def _start(
        self, task: Task[Any, Any], message: MessageProxy, envelope: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Letter | None:
        record = start_record(task, message, envelope, list(args), kwargs)
        return Letter(envelope.invocation_id, envelope.trigger(), record)

    def _result(
        self, task: Task[Any, Any], message: MessageProxy, envelope: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Letter | None:
        return Letter(envelope.invocation_id, envelope.trigger())

    def _timer(
        self, task: Task[Any, Any], message: MessageProxy, envelope: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Letter | None:
        if self._early_timer(task, envelope, message):
            return None
        return Letter(envelope.invocation_id, envelope.trigger())

    def _signal(
        self, task: Task[Any, Any], message: MessageProxy, envelope: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Letter | None:
        if self._elsewhere(task, envelope, message):
            return None
        return Letter(envelope.invocation_id, envelope.trigger(self.app.settings.max_pending_signals))

    def _cancel(
        self, task: Task[Any, Any], message: MessageProxy, envelope: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Letter | None:
        if self._elsewhere(task, envelope, message):
            return None
        return Letter(envelope.invocation_id, envelope.trigger())

    _DOOR: ClassVar[dict[str, Callable[..., Letter | None]]] = {
        "start": _start,
        "result": _result,
        "timer": _timer,
        "signal": _signal,
        "cancel": _cancel,
    }

    @staticmethod
    def dead_letter(message: MessageProxy, exc: EncoreError) -> NoReturn:
        """Fail the message at once, whatever the task's retry policy (a retry would fail the
        same way): dramatiq then rejects it, and RabbitMQ routes it to ``<queue>.XQ``."""
        message.options["throws"] = (type(exc),)
        logger.error("dead-lettering message %s: %s", message.message_id, exc)
        raise exc

    @staticmethod
    def _refuse_pipelines(task: Task[Any, Any], message: MessageProxy) -> None:
        if "pipe_target" in message.options:
            raise MisuseError(
                f"message {message.message_id!r} for {task.name!r} is part of a dramatiq pipeline; "
                "pipelines are not supported by encore tasks: compose steps with wf.execute_task"
            )

    def _elsewhere(
        self, task: Task[Any, Any], envelope: SignalEnvelope | CancelEnvelope, message: MessageProxy
    ) -> bool:
        """True when a signal or cancel is not delivered here: its invocation belongs to another
        task (forwarded to its actor) or does not exist yet (re-sent later, a while: its start
        may still be on the way; then delivered, and the store marks a signal's target lost)."""
        meta = self.state.get_meta(envelope.invocation_id)
        if meta is not None:
            logs.identify(envelope.invocation_id, meta.record.identity.workflow_id)
        if meta is None:
            if int(message.options.get(NUDGES, 0)) < UNKNOWN_NUDGES:
                self.nudge(message, transient=True)
                return True
            return False
        if meta.record.task != task.name:
            record = meta.record
            self.outbox.send(record.queue, record.task, [], {}, envelope.model_dump(mode="json"))
            return True
        return False

    def _early_timer(self, task: Task[Any, Any], envelope: TimerEnvelope, message: MessageProxy) -> bool:
        if polled(self.app) or envelope.due - self.app.clock.time() <= DUE_SLACK_S:
            return False  # the poller sends only due timers (by the store's clock, which decides)
        due = self.state.timer_due(envelope.invocation_id, envelope.step)
        if due is None:
            return True  # resolved or finished meanwhile: nothing to wake
        if due != envelope.due:
            what = (
                f"timer for step {envelope.step} of {envelope.invocation_id!r} is due at {due!r}, not {envelope.due!r}"
            )
            self.dead_letter(message, UntrustedMessage(f"message {message.message_id!r}: {what}"))
        self.outbox.send_timer(task.queue_name, task.name, envelope)
        return True

    # -- when the store granted no pass ---------------------------------------------------------
    def settle(
        self, task: Task[Any, Any], invocation_id: str, delivery: Delivery, trigger: Trigger, message: MessageProxy
    ) -> None:
        """Act on a delivery that granted no lease (see the module docstring)."""
        verdict = delivery.verdict
        if verdict == "conflict":
            self.dead_letter(message, WorkflowIdConflict(invocation_id, task.name))
        if verdict in ("refused", "unknown"):
            self.dead_letter(message, self._untrusted(invocation_id, delivery, trigger, message))
        if verdict == "early":
            self._early(invocation_id, delivery, trigger, message)
        elif verdict == "due":
            envelope = TimerEnvelope(invocation_id=invocation_id, step=trigger.step or 0, due=float(delivery.detail))
            self.outbox.send_timer(task.queue_name, task.name, envelope, at_least_ms=10)
        elif verdict == "ignored":
            logger.debug("message %s for %s ignored: %s", message.message_id, invocation_id, delivery.detail)
        elif delivery.locked:
            self.nudge(message, fresh=not delivery.duplicate)
        elif delivery.duplicate and not self._fresh_copy(message):
            self.repair(invocation_id, trigger.key)

    @staticmethod
    def _untrusted(invocation_id: str, delivery: Delivery, trigger: Trigger, message: MessageProxy) -> UntrustedMessage:
        what = f"message {message.message_id!r} ({trigger.kind} for {invocation_id!r})"
        if delivery.verdict == "refused":
            return UntrustedMessage(f"{what} was refused: {delivery.detail}")
        if delivery.detail == "lost":
            return UntrustedMessage(
                f"{what} names an invocation the state store has no record of: marked lost (Redis restarted "
                "without persistence, evicted keys or was flushed)"
            )
        return UntrustedMessage(f"{what} names an invocation that does not exist")

    def _early(self, invocation_id: str, delivery: Delivery, trigger: Trigger, message: MessageProxy) -> None:
        if int(message.options.get(NUDGES, 0)) < EARLY_NUDGES:
            self.nudge(message)
            return
        detail = delivery.detail or "its parent has not recorded the step that starts it"
        what = f"message {message.message_id!r} ({trigger.kind} for {invocation_id!r})"
        self.dead_letter(message, UntrustedMessage(f"{what} is still early after {EARLY_NUDGES} tries: {detail}"))

    @staticmethod
    def _fresh_copy(message: MessageProxy) -> bool:
        """A re-sent copy of a trigger that its first delivery recorded, delivered for the first
        time: whoever held the lease then answers for the trigger's effects, so there is nothing
        to repair (and a repair loads the whole journal). A redelivery (after a crash of a worker
        that may have driven a pass with this copy) is repaired as usual."""
        return bool(message.options.get(FRESH)) and not getattr(message, "redelivered", False)

    def nudge(self, message: MessageProxy, transient: bool = False, fresh: bool = False) -> None:
        """Re-send a copy shortly: the lease is held (contention), was lost, the store is down,
        or the message came early.

        Raising ``Retry`` would consume the user's ``max_retries``; a delayed copy does not.
        """
        nudges = int(message.options.get(NUDGES, 0))
        base, cap = (100, 5_000) if transient else (20, 1_000)
        delay = min(base * 2 ** min(nudges, 16), cap) + random.randint(0, 20)
        options = {NUDGES: nudges + 1, FRESH: fresh or bool(message.options.get(FRESH))}
        self.app.broker.enqueue(message.copy(options=options), delay=delay)

    def repair(self, invocation_id: str, trigger_key: str) -> None:
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
