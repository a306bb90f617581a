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
from ..state.models import ParentRef

ENVELOPE = "encore"
NUDGES = "encore_nudges"


class StartEnvelope(BaseModel):
    """Start invocation ``invocation_id`` (a child started by a parent's step)."""

    kind: Literal["start"] = "start"
    invocation_id: str
    identity: WorkflowIdentity
    parent: ParentRef | None = None

    def trigger(self) -> Trigger:
        return Trigger.start()


class ResultEnvelope(BaseModel):
    """Child ``child`` finished: resolve step ``step`` of ``invocation_id`` from its outcome."""

    kind: Literal["result"] = "result"
    invocation_id: str
    step: int
    child: str

    def trigger(self) -> Trigger:
        return Trigger.result(self.step, self.child)


Envelope = Annotated[StartEnvelope | ResultEnvelope, Field(discriminator="kind")]
_envelope = TypeAdapter(Envelope)


class MalformedMessage(EncoreError):
    """A message whose encore envelope or workflow id is invalid."""


def read_envelope(options: dict[str, Any], message_id: str, task_name: str) -> StartEnvelope | ResultEnvelope:
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
        return _envelope.validate_python(raw)
    except ValidationError as exc:
        raise MalformedMessage(
            f"message {message_id!r} for {task_name!r} has an invalid encore envelope: {exc}"
        ) from None
