"""Pydantic models of every message kind an invocation's mailbox receives.

Messages are ordinary dramatiq messages (the 7-key JSON body). The engine's own messages
carry an envelope in ``options["encore"]``; a message without one is a start sent by any
producer, whose workflow id is ``options["workflow_id"]`` or else its ``message_id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from ..errors import EncoreError
from ..identity import (
    SEPARATOR,
    WorkflowIdentity,
    check_invocation_id,
    check_workflow_id,
    child_invocation_id,
    root_of,
    unprintable,
)
from ..state.backend import DEFAULT_MAX_SIGNALS, Trigger
from ..state.models import ParentRef

ENVELOPE = "encore"
NUDGES = "encore_nudges"
# Set on a re-sent copy whose trigger its first delivery recorded: the lease holder of that
# moment answers for the trigger's effects, so the copy never needs to repair them.
FRESH = "encore_fresh"
# Set on a child's start re-sent by a repair: it may duplicate one still on its way, so its
# first pass waits for its delivery (which finds the duplicate) instead of running ahead.
RESENT = "encore_resent"
# A W3C traceparent: the span a root's producer had when it sent the start, carried on by every
# message of the tree (read only by dramatiq_encore.observe.tracing; never by the engine).
TRACE = "encore_trace"
#: A repair re-sends a start this late: the original, if it was only slow, has created the
#: child by then, and the copy is recognised as a duplicate without running the child again.
RESEND_DELAY_MS = 1_000
MAX_NAME_LENGTH = 200
MAX_REASON_LENGTH = 1_000


def _invocation_id(value: str) -> str:
    try:
        return check_invocation_id(value)
    except EncoreError as exc:
        raise ValueError(str(exc)) from None


def _printable(value: str) -> str:
    hidden = unprintable(value)
    if hidden:
        raise ValueError(f"contains control or format characters ({', '.join(map(repr, hidden))})")
    return value


InvocationId = Annotated[str, AfterValidator(_invocation_id)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_printable)]
Step = Annotated[int, Field(ge=1)]


def _ancestor_or_self(workflow_id: str | None, invocation_id: str) -> bool:
    """A workflow id seen in a tree names the invocation that started that workflow."""
    return workflow_id is None or workflow_id == invocation_id or invocation_id.startswith(workflow_id + SEPARATOR)


class _Envelope(BaseModel):
    # Unknown fields are refused: a message that carries more than the engine sends (an
    # outcome in a result, say) was not sent by the engine.
    model_config = ConfigDict(extra="forbid", strict=True)


class StartEnvelope(_Envelope):
    """Start invocation ``invocation_id`` (a child started by a parent's step).

    The ids must fit the tree: a child's id is its parent's id and step, and its identity
    names workflows of that tree. Whether the parent's step really started this child is
    checked by the state store (see :meth:`~dramatiq_encore.state.StateBackend.deliver`).
    """

    kind: Literal["start"] = "start"
    invocation_id: InvocationId
    identity: WorkflowIdentity
    parent: ParentRef | None = None

    @model_validator(mode="after")
    def _fits_the_tree(self) -> StartEnvelope:
        identity, invocation_id = self.identity, self.invocation_id
        if self.parent is None and SEPARATOR in invocation_id:
            raise ValueError(f"{invocation_id!r} is a child id, but the start names no parent")
        if self.parent is not None and invocation_id != child_invocation_id(
            self.parent.invocation_id, self.parent.step
        ):
            raise ValueError(
                f"{invocation_id!r} is not the id of step {self.parent.step} of {self.parent.invocation_id!r}"
            )
        fits = (
            identity.root_workflow_id == root_of(invocation_id)
            and _ancestor_or_self(identity.workflow_id, invocation_id)
            and _ancestor_or_self(identity.parent_workflow_id, invocation_id)
        )
        if not fits:
            raise ValueError(f"the identity {identity.model_dump()} does not fit invocation {invocation_id!r}")
        return self

    def trigger(self) -> Trigger:
        return Trigger.start()


class ResultEnvelope(_Envelope):
    """Child ``child`` finished: resolve step ``step`` of ``invocation_id`` from its outcome.

    The outcome is the one the child's own record holds, read by the state store when it
    resolves the step: a message cannot carry one. ``child`` must be the id of that step.
    """

    kind: Literal["result"] = "result"
    invocation_id: InvocationId
    step: Step
    child: InvocationId

    @model_validator(mode="after")
    def _child_of_the_step(self) -> ResultEnvelope:
        if self.child != child_invocation_id(self.invocation_id, self.step):
            raise ValueError(f"child {self.child!r} is not the child of step {self.step} of {self.invocation_id!r}")
        return self

    def trigger(self) -> Trigger:
        return Trigger.result(self.step, self.child)


class TimerEnvelope(_Envelope):
    """Wake-up for timer step ``step`` of ``invocation_id``, due at ``due`` (epoch seconds).

    Sent to the invocation's own actor with a dramatiq delay of at most :data:`MAX_HOP_S`; a
    worker that receives it early sends it on with the remaining delay.
    """

    kind: Literal["timer"] = "timer"
    invocation_id: InvocationId
    step: Step
    due: Annotated[float, Field(allow_inf_nan=False)]

    def trigger(self) -> Trigger:
        return Trigger.timer(self.step, self.due)


class SignalEnvelope(_Envelope):
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
    is omitted, the message's ``message_id`` is used. ``payload`` is any JSON value, at most
    ``ENCORE_MAX_PAYLOAD`` bytes; names and ids are at most 200 printable characters.
    """

    kind: Literal["signal"] = "signal"
    invocation_id: InvocationId
    name: Name
    payload: Any = None
    signal_id: Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_printable)] = ""

    def trigger(self, limit: int = DEFAULT_MAX_SIGNALS) -> Trigger:
        return Trigger.signal(self.name, self.payload, self.signal_id, limit)


class CancelEnvelope(_Envelope):
    """Cancel invocation ``invocation_id`` (sent by ``app.cancel`` and to a cancelled parent's children)."""

    kind: Literal["cancel"] = "cancel"
    invocation_id: InvocationId
    reason: Annotated[str, Field(max_length=MAX_REASON_LENGTH)] = ""

    def trigger(self) -> Trigger:
        return Trigger.cancel(self.reason)


AnyEnvelope = StartEnvelope | ResultEnvelope | TimerEnvelope | SignalEnvelope | CancelEnvelope
#: Every message kind. Each has its envelope here, its handler at the mailbox's door
#: (``Mailbox._DOOR``), its branch in ``deliver.lua`` and in ``MemoryState`` (a test checks).
KINDS = ("start", "result", "timer", "signal", "cancel")
Envelope = Annotated[AnyEnvelope, Field(discriminator="kind")]
_envelope = TypeAdapter(Envelope)
#: The longest dramatiq delay of a timer message: workers never hold one for longer.
MAX_HOP_S = 30.0
#: A timer message this close to its due time counts as due (dramatiq's eta has 1 ms steps).
DUE_SLACK_S = 0.005


class MalformedMessage(EncoreError):
    """A message whose encore envelope or workflow id is invalid."""


def _problems(exc: ValidationError) -> str:
    # The first location is the union's tag (the envelope's kind): left out.
    return "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'envelope'}: {e['msg']}" for e in exc.errors())


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
        if isinstance(envelope, SignalEnvelope) and not envelope.signal_id:
            envelope.signal_id = _printable(message_id)
    except (ValidationError, ValueError) as exc:
        detail = _problems(exc) if isinstance(exc, ValidationError) else f"message_id {exc}"
        raise MalformedMessage(
            f"message {message_id!r} for {task_name!r} has an invalid encore envelope: {detail}"
        ) from None
    return envelope
