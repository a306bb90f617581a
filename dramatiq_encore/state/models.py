"""Pydantic records of what the state store keeps: invocation metadata and journal entries.

An invocation's history is an append-only journal of JSON entries. Its snapshot is the fold
of that journal, so a worker that already holds a prefix only loads the tail.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from ..identity import WorkflowIdentity

ACTIVE = ("pending", "running", "suspended")
FINISHED = ("succeeded", "failed", "cancelled")
#: A workflow whose state the store lost (a message named it, the store had no record).
LOST = "lost"


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
    #: How many times the invocation continued as new (``wf.continue_as_new``); each run has
    #: its own seed and journal.
    run: int = 0
    #: Step numbers of this run start after this one, so children's ids never repeat.
    first_step: int = 0

    @property
    def fingerprint(self) -> str:
        """What the parent's step recorded about this child ('' for a root): its start counts
        only when it matches (see :func:`start_fingerprint`)."""
        if self.parent is None:
            return ""
        return start_fingerprint(self.task, self.digest, self.identity, self.parent)


def start_fingerprint(task: str, args_digest: str, identity: WorkflowIdentity, parent: ParentRef) -> str:
    """Digest of everything a child's start carries besides its arguments' own digest."""
    text = json.dumps([task, args_digest, identity.model_dump(), parent.model_dump()], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class InvocationMeta(BaseModel):
    """The record plus the mutable status and outcome."""

    record: InvocationRecord
    status: str = "pending"
    outcome: Outcome | None = None
    #: Signals received and not consumed yet (capped: see ``ENCORE_MAX_PENDING_SIGNALS``).
    signals_waiting: int = 0


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
    #: When the step was recorded (epoch seconds): for operators, never read by a replay.
    t: float | None = None


class TimerEntry(BaseModel):
    """Step ``n`` is a durable timer of ``seconds``, due at ``due`` (epoch seconds).

    Resolved with ``Outcome(ok=True, value=None)`` by a ``timer:<n>`` trigger once due.
    """

    e: Literal["timer"] = "timer"
    n: int
    seconds: float
    due: float
    origin: str = ""
    t: float | None = None


class WaitEntry(BaseModel):
    """Step ``n`` waits for the next unconsumed signal ``name``; with ``due``, until then at most.

    Resolved by the pass that consumes a signal (value ``{"id", "payload"}``) or by its
    timer (value ``None``: the wait timed out), whichever is recorded first.
    """

    e: Literal["wait"] = "wait"
    n: int
    name: str
    timeout: float | None = None
    due: float | None = None
    origin: str = ""
    t: float | None = None


class SignalEntry(BaseModel):
    """Signal ``id`` named ``name`` reached the invocation (appended once by ``deliver``)."""

    e: Literal["sig"] = "sig"
    name: str
    payload: Any = None
    id: str


class CancelEntry(BaseModel):
    """Cancellation was requested (appended once by ``deliver``)."""

    e: Literal["cancel"] = "cancel"
    reason: str = ""


class ResolvedEntry(BaseModel):
    """Step ``n`` resolved with this outcome (appended atomically when the result arrives)."""

    e: Literal["res"] = "res"
    n: int
    o: Outcome
    #: When the step was resolved (epoch seconds, the store's clock).
    t: float | None = None


#: A positional step of any kind: a child task, a timer or a wait for a signal.
AnyStep = StepEntry | TimerEntry | WaitEntry


def step_record(parent: InvocationRecord, step: AnyStep) -> str:
    """What the state store keeps of a step to check the triggers that resolve it.

    ``c:<fingerprint>`` for a child task (its start and its result must come from that
    child), ``t:<due>`` for a timer or a signal wait with a timeout (its timer message must
    carry that due time, and counts only once it has passed), ``w`` for a plain signal wait.
    """
    if isinstance(step, StepEntry):
        ref = ParentRef(invocation_id=parent.invocation_id, task=parent.task, queue=parent.queue, step=step.n)
        return "c:" + start_fingerprint(step.task, step.digest, step.identity, ref)
    if step.due is not None:
        return f"t:{step.due!r}"
    return "w"


JournalEntry = Annotated[
    ValueEntry | StepEntry | TimerEntry | WaitEntry | SignalEntry | CancelEntry | ResolvedEntry,
    Field(discriminator="e"),
]
journal_entry = TypeAdapter(JournalEntry)
