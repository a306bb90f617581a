"""Messages out: children's starts, results to parents, timer wake-ups, cancels, callbacks.

What the runtime sends when is its business (see :mod:`.runtime`); every message may be
sent again by a repair, and each is idempotent at its receiver.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import dramatiq

from ..state.models import InvocationRecord, Outcome, ParentRef, StepEntry, TimerEntry, WaitEntry
from .messages import (
    ENVELOPE,
    MAX_HOP_S,
    RESEND_DELAY_MS,
    RESENT,
    CancelEnvelope,
    ResultEnvelope,
    StartEnvelope,
    TimerEnvelope,
)
from .poller import Shadow, polled

if TYPE_CHECKING:
    from ..app import Encore

logger = logging.getLogger(__name__)


class Outbox:
    """Publishes the engine's own messages on the app's broker."""

    def __init__(self, app: Encore) -> None:
        self.app = app
        #: Timers this process recorded, checked after they are due (see :class:`.poller.Shadow`).
        self.shadow = Shadow()

    def send(
        self,
        queue: str,
        actor: str,
        args: list[Any],
        kwargs: dict[str, Any],
        envelope: dict[str, Any],
        delay: int | None = None,
        **options: Any,
    ) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue,
            actor_name=actor,
            args=tuple(args),
            kwargs=kwargs,
            options={ENVELOPE: envelope, **options},
        )
        self.app.broker.enqueue(message, delay=delay)

    def start_children(self, record: InvocationRecord, steps: list[StepEntry], resent: bool = False) -> None:
        """Send the children's starts; ``resent`` when a repair sends them again (see RESENT)."""
        extra: dict[str, Any] = {RESENT: True} if resent else {}
        for step in steps:
            parent = ParentRef(invocation_id=record.invocation_id, task=record.task, queue=record.queue, step=step.n)
            envelope = StartEnvelope(invocation_id=step.child, identity=step.identity, parent=parent)
            payload = envelope.model_dump(mode="json")
            delay = RESEND_DELAY_MS if resent else None
            self.send(step.queue, step.task, step.args, step.kwargs, payload, delay=delay, **extra)

    def send_result(self, record: InvocationRecord) -> None:
        self.app.broker.enqueue(self.result_message(record))

    @staticmethod
    def result_message(record: InvocationRecord) -> dramatiq.Message[Any]:
        """The message that tells ``record``'s parent its step finished (the parent's store
        reads the outcome from the child's record, never from the message)."""
        parent = record.parent
        assert parent is not None
        envelope = ResultEnvelope(invocation_id=parent.invocation_id, step=parent.step, child=record.invocation_id)
        return dramatiq.Message(
            queue_name=parent.queue,
            actor_name=parent.task,
            args=(),
            kwargs={},
            options={ENVELOPE: envelope.model_dump(mode="json")},
        )

    def start_timers(self, record: InvocationRecord, timers: list[TimerEntry | WaitEntry]) -> None:
        if polled(self.app):  # the commit put them in the store's timer index: the poller wakes them
            for timer in timers:
                assert timer.due is not None
                self.shadow.add(timer.due, record.invocation_id, timer.n, record.queue, record.task)
            return
        for timer in timers:
            assert timer.due is not None
            envelope = TimerEnvelope(invocation_id=record.invocation_id, step=timer.n, due=timer.due)
            self.send_timer(record.queue, record.task, envelope)

    def send_timer(
        self, queue: str, actor: str, envelope: TimerEnvelope, at_least_ms: int = 0, *, poll: bool = False
    ) -> None:
        """Send a wake-up to the invocation's own actor, delayed by min(remaining, 30 s)
        (``at_least_ms``: the store's clock said it is not due yet, whatever this one says).
        With the poller (``poll`` is its own send) a timer not due yet is left to the index."""
        if polled(self.app) and not poll:
            return
        remaining = max(0.0, envelope.due - self.app.clock.time())
        delay = max(math.ceil(min(remaining, MAX_HOP_S) * 1000), at_least_ms)
        self.send(queue, actor, [], {}, envelope.model_dump(mode="json"), delay=delay or None)

    def cancel_children(self, steps: list[StepEntry], reason: str) -> None:
        for step in steps:
            envelope = CancelEnvelope(invocation_id=step.child, reason=reason)
            self.send(step.queue, step.task, [], {}, envelope.model_dump(mode="json"))

    def callback(self, record: InvocationRecord, outcome: Outcome) -> None:
        """Fire the invocation's ``on_success`` / ``on_failure`` dramatiq callback, if any."""
        target = record.callbacks.get("on_success" if outcome.ok else "on_failure")
        if not target:
            return
        original = {
            "queue_name": record.queue,
            "actor_name": record.task,
            "args": record.args,
            "kwargs": record.kwargs,
            "options": {},
            "message_id": record.message_id,
            "message_timestamp": int(record.created_at * 1000),
        }
        error = outcome.error
        payload = outcome.value if error is None else {"type": error.type, "message": error.message}
        self.app.broker.get_actor(target).send(original, payload)
