"""``retry`` and ``fork``: a workflow's journal cut at a step and run again with today's code.

Both keep the journal up to a step and renumber the steps they keep, so the steps that run
again get fresh step numbers and hence fresh child ids (a child id is ``<parent>/<step>``):

- retry: a new *run* of the failed root (``run + 1``, steps numbered after every step of the
  runs before, as continue-as-new does). Every step before the failed one keeps its recorded
  result and every value recorded before it; the failed step runs again. Caches of the old
  run are invalid (a snapshot is keyed by its run).
- fork: a new root workflow whose journal holds steps 1..N-1 of the old one (their results
  and values, and the data their ``set_data`` calls wrote); its children stay in the old tree.

Then a plain start message (the 7-key body any producer can send) makes a worker run it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any

import dramatiq

from ..errors import NotRetryable
from ..identity import WorkflowIdentity, check_workflow_id
from ..state.backend import StateBackend
from ..state.models import (
    CancelEntry,
    InvocationRecord,
    JournalEntry,
    ResolvedEntry,
    SignalEntry,
    StepEntry,
    TimerEntry,
    ValueEntry,
    WaitEntry,
)
from .tree import Folded, operations, read_tree


@dataclasses.dataclass(frozen=True)
class Cut:
    """The entries kept before step ``at`` (None: every step is kept), renumbered by ``shift``."""

    entries: list[JournalEntry]
    at: int | None


def _position(entries: list[JournalEntry], step: int | None) -> int:
    if step is None:
        return len(entries)
    return next(i for i, e in enumerate(entries) if isinstance(e, StepEntry | TimerEntry | WaitEntry) and e.n == step)


def cut(folded: Folded, at: int | None, keep_signals_after: bool) -> Cut:
    """Entries before step ``at``'s, plus later resolutions of the steps kept (and, when asked,
    signals that arrived later); cancel requests are dropped."""
    position = _position(folded.entries, at)
    kept: list[JournalEntry] = []
    for index, entry in enumerate(folded.entries):
        before = index < position
        if isinstance(entry, CancelEntry):
            continue
        if isinstance(entry, ResolvedEntry):
            if at is None or entry.n < at:
                kept.append(entry)
        elif isinstance(entry, SignalEntry):
            if before or keep_signals_after:
                kept.append(entry)
        elif before:
            kept.append(entry)
    return Cut(kept, at)


def renumber(entries: list[JournalEntry], shift: int) -> list[str]:
    """Entries as JSON text with every step number moved by ``shift``."""
    out = []
    for entry in entries:
        if isinstance(entry, StepEntry | TimerEntry | WaitEntry | ResolvedEntry) and shift:
            entry = entry.model_copy(update={"n": entry.n + shift})
        out.append(entry.model_dump_json())
    return out


def unconsumed(entries: list[JournalEntry]) -> int:
    consumed = {
        str(e.o.value.get("id")) for e in entries if isinstance(e, ResolvedEntry) and isinstance(e.o.value, dict)
    }
    return sum(1 for e in entries if isinstance(e, SignalEntry) and e.id not in consumed)


def failed_step(folded: Folded) -> int | None:
    """The first step that failed or never finished (None: the body failed on its own)."""
    for n in sorted(folded.steps):
        resolved = folded.results.get(n)
        if resolved is None or not resolved.o.ok:
            return n
    return None


def start_message(record: InvocationRecord) -> dramatiq.Message[Any]:
    """The plain start any producer could send: a worker finds the prepared state and runs it."""
    return dramatiq.Message(
        queue_name=record.queue,
        actor_name=record.task,
        args=tuple(record.args),
        kwargs=record.kwargs,
        options={"workflow_id": record.invocation_id},
    )


def retry(state: StateBackend, broker: dramatiq.Broker, workflow_id: str) -> int:
    """Resume failed root workflow ``workflow_id`` from its failed step; returns that step's number."""
    folded = read_tree(state, workflow_id)[workflow_id]
    meta = folded.stored.meta
    if meta.status != "failed":
        raise NotRetryable(f"workflow {workflow_id!r} is {meta.status}: only a failed workflow can be retried")
    record = meta.record
    at = failed_step(folded)
    kept = cut(folded, at, keep_signals_after=True)
    last = max([record.first_step, *folded.steps])
    shift = last - record.first_step
    new = record.model_copy(update={"run": record.run + 1, "first_step": last, "seed": uuid.uuid4().hex})
    why = operations(state).reopen(new, record.run, renumber(kept.entries, shift), unconsumed(kept.entries))
    if why is not None:
        raise NotRetryable(f"workflow {workflow_id!r} cannot be retried: {why}")
    broker.enqueue(start_message(new))
    return (at if at is not None else last + 1) - record.first_step  # as the code counts steps


def fork(state: StateBackend, broker: dramatiq.Broker, workflow_id: str, from_step: int, new_id: str | None) -> str:
    """A new root workflow that keeps steps before ``from_step`` of ``workflow_id``; its id.

    Steps are counted as the code counts them (and ``describe`` shows them): the first step of
    the workflow's current run is 1.
    """
    new_id = check_workflow_id(new_id or f"{workflow_id}-fork-{uuid.uuid4().hex[:8]}")
    folded = read_tree(state, workflow_id)[workflow_id]
    record = folded.stored.meta.record
    if record.parent is not None:
        raise NotRetryable(f"{workflow_id!r} is not a root workflow; fork its root")
    count = max([record.first_step, *folded.steps]) - record.first_step
    if not 0 < from_step <= count + 1:
        raise NotRetryable(
            f"workflow {workflow_id!r} recorded steps 1..{count}: --from-step must be one of them, or {count + 1} "
            "to keep them all"
        )
    at = record.first_step + from_step  # the step number the store recorded
    kept = cut(folded, at if from_step <= count else None, keep_signals_after=False)
    unresolved = sorted(n - record.first_step for n in folded.steps if n < at and n not in folded.results)
    if unresolved:
        raise NotRetryable(
            f"step {unresolved[0]} of {workflow_id!r} had not finished; fork from step {unresolved[0]} or earlier"
        )
    identity = WorkflowIdentity.root(new_id, record.task)
    new = record.model_copy(
        update={
            "invocation_id": new_id,
            "identity": identity,
            "seed": uuid.uuid4().hex,
            "run": 0,
            "first_step": 0,
            "message_id": "",
            "created_at": time.time(),
        }
    )
    if not operations(state).seed(new, renumber(kept.entries, -record.first_step), _data(kept.entries)):
        raise NotRetryable(f"a workflow {new_id!r} exists already; choose another --workflow-id")
    broker.enqueue(start_message(new))
    return new_id


def _data(entries: list[JournalEntry]) -> dict[str, str]:
    """The workflow data the kept ``set_data`` calls wrote (recorded with their value)."""
    data: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry, ValueEntry) and entry.k == "set_data" and entry.name and isinstance(entry.v, str):
            json.loads(entry.v)  # recorded as JSON text
            data[entry.name] = entry.v
    return data
