"""Pydantic models of every message kind an invocation's mailbox receives.

Messages are ordinary dramatiq messages (the 7-key JSON body). The engine's own messages
carry an envelope in ``options["encore"]``; a message without one is a start sent by any
producer, whose workflow id is ``options["workflow_id"]`` or else its ``message_id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from ..errors import EncoreError
from ..identity import WorkflowIdentity, check_workflow_id
from ..state.backend import Trigger
from ..state.models import Outcome, ParentRef

ENVELOPE = "encore"
NUDGES = "encore_nudges"
# Set on a re-sent copy whose trigger its first delivery recorded: the lease holder of that
# moment answers for the trigger's effects, so the copy never needs to repair them.
FRESH = "encore_fresh"
# Set on a child's start re-sent by a repair: it may duplicate one still on its way, so its
# first pass waits for its delivery (which finds the duplicate) instead of running ahead.
RESENT = "encore_resent"
#: A repair re-sends a start this late: the original, if it was only slow, has created the
#: child by then, and the copy is recognised as a duplicate without running the child again.
RESEND_DELAY_MS = 1_000


class StartEnvelope(BaseModel):
    """Start invocation ``invocation_id`` (a child started by a parent's step)."""

    kind: Literal["start"] = "start"
    invocation_id: str
    identity: WorkflowIdentity
    parent: ParentRef | None = None

    def trigger(self) -> Trigger:
        return Trigger.start()


class ResultEnvelope(BaseModel):
    """Child ``child`` finished: resolve step ``step`` of ``invocation_id`` from its outcome.

    The outcome travels in the message, so the child may publish it before its own commit
    (off the critical path); without one, the child's stored outcome is used.
    """

    kind: Literal["result"] = "result"
    invocation_id: str
    step: int
    child: str
    outcome: Outcome | None = None

    def trigger(self) -> Trigger:
        return Trigger.result(self.step, self.child, self.outcome)


class TimerEnvelope(BaseModel):
    """Wake-up for timer step ``step`` of ``invocation_id``, due at ``due`` (epoch seconds).

    Sent to the invocation's own actor with a dramatiq delay of at most :data:`MAX_HOP_S`; a
    worker that receives it early sends it on with the remaining delay.
    """

    kind: Literal["timer"] = "timer"
    invocation_id: str
    step: int
    due: float

    def trigger(self) -> Trigger:
        return Trigger.timer(self.step)


class SignalEnvelope(BaseModel):
    """Signal ``name`` with ``payload`` for the workflow whose root invocation is ``invocation_id``.

    Any producer may send it as a plain dramatiq message to the workflow's task (its actor
    and queue); the body is::

        {"queue_name": "<the task's queue>", "actor_name": "<the task's name>",
         "args": [], "kwargs": {},
         "options": {"encore": {"kind": "signal", "invocation_id": "<workflow id>",
                                "name": "approval", "payload": {"ok": true},
                                "signal_id": "<unique id>"}},
         "message_id": "<unique id>", "message_timestamp": <ms since the epoch>}

    ``signal_id`` makes delivery idempotent (a duplicated message is recorded once); when it
    is omitted, the message's ``message_id`` is used. ``payload`` is any JSON value.
    """

    kind: Literal["signal"] = "signal"
    invocation_id: str
    name: str
    payload: Any = None
    signal_id: str = ""

    def trigger(self) -> Trigger:
        return Trigger.signal(self.name, self.payload, self.signal_id)


class CancelEnvelope(BaseModel):
    """Cancel invocation ``invocation_id`` (sent by ``app.cancel`` and to a cancelled parent's children)."""

    kind: Literal["cancel"] = "cancel"
    invocation_id: str
    reason: str = ""

    def trigger(self) -> Trigger:
        return Trigger.cancel(self.reason)


AnyEnvelope = StartEnvelope | ResultEnvelope | TimerEnvelope | SignalEnvelope | CancelEnvelope
Envelope = Annotated[AnyEnvelope, Field(discriminator="kind")]
_envelope = TypeAdapter(Envelope)
#: The longest dramatiq delay of a timer message: workers never hold one for longer.
MAX_HOP_S = 30.0
#: A timer message this close to its due time counts as due (dramatiq's eta has 1 ms steps).
DUE_SLACK_S = 0.005


class MalformedMessage(EncoreError):
    """A message whose encore envelope or workflow id is invalid."""


def read_envelope(options: dict[str, Any], message_id: str, task_name: str) -> AnyEnvelope:
    """The envelope of a message, or a root start for a plain producer message."""
    raw = options.get(ENVELOPE)
    if raw is None:
        workflow_id = options.get("workflow_id") or message_id
        try:
            check_workflow_id(workflow_id)
        except EncoreError as exc:
            raise MalformedMessage(f"message {message_id!r} for {task_name!r}: {exc}") from None
        return StartEnvelope(invocation_id=workflow_id, identity=WorkflowIdentity.root(workflow_id, task_name))
    try:
        envelope = _envelope.validate_python(raw)
    except ValidationError as exc:
        raise MalformedMessage(
            f"message {message_id!r} for {task_name!r} has an invalid encore envelope: {exc}"
        ) from None
    if isinstance(envelope, SignalEnvelope) and not envelope.signal_id:
        envelope.signal_id = message_id
    return envelope
