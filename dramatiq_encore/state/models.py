"""Pydantic records of what the state store keeps: invocation metadata and journal entries.

An invocation's history is an append-only journal of JSON entries. Its snapshot is the fold
of that journal, so a worker that already holds a prefix only loads the tail.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from ..identity import WorkflowIdentity

ACTIVE = ("pending", "running", "suspended")
FINISHED = ("succeeded", "failed", "cancelled")


class ErrorInfo(BaseModel):
    """A user error stored as text: type name, message and traceback (never pickled)."""

    type: str
    message: str
    traceback: str = ""


class Outcome(BaseModel):
    """How an invocation (or one of its steps) ended: a JSON result or an error."""

    ok: bool
    value: Any = None
    error: ErrorInfo | None = None
    invocation_id: str = ""


class ParentRef(BaseModel):
    """Where a child invocation reports its outcome: the parent invocation and step number."""

    invocation_id: str
    task: str
    queue: str
    step: int


class InvocationRecord(BaseModel):
    """The fixed part of an invocation, written once when it is created."""

    invocation_id: str
    task: str
    queue: str
    identity: WorkflowIdentity
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    digest: str
    seed: str
    parent: ParentRef | None = None
    callbacks: dict[str, str] = Field(default_factory=dict)
    message_id: str = ""
    created_at: float = 0.0


class InvocationMeta(BaseModel):
    """The record plus the mutable status and outcome."""

    record: InvocationRecord
    status: str = "pending"
    outcome: Outcome | None = None


class ValueEntry(BaseModel):
    """One value of a deterministic stream (random, uuid, utc_now, side_effect, data reads...)."""

    e: Literal["v"] = "v"
    k: str
    v: Any = None
    name: str | None = None


class StepEntry(BaseModel):
    """Step ``n`` started child invocation ``child`` of ``task`` with these arguments."""

    e: Literal["step"] = "step"
    n: int
    task: str
    queue: str
    digest: str
    child: str
    identity: WorkflowIdentity
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    origin: str = ""


class ResolvedEntry(BaseModel):
    """Step ``n`` resolved with this outcome (appended atomically when the result arrives)."""

    e: Literal["res"] = "res"
    n: int
    o: Outcome


JournalEntry = Annotated[ValueEntry | StepEntry | ResolvedEntry, Field(discriminator="e")]
journal_entry = TypeAdapter(JournalEntry)
