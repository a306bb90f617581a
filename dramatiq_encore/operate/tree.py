"""Reading a workflow tree from the store, and the listing's cursor."""

from __future__ import annotations

import base64
import dataclasses
import json

from ..errors import ConfigurationError, EncoreError, UnknownWorkflow
from ..state.backend import StateBackend
from ..state.models import (
    AnyStep,
    CancelEntry,
    JournalEntry,
    ResolvedEntry,
    SignalEntry,
    StepEntry,
    TimerEntry,
    ValueEntry,
    WaitEntry,
    journal_entry,
)
from ..state.operations import After, Operations, StoredInvocation


def operations(state: StateBackend) -> Operations:
    """The store's operator interface, or an error naming what is missing."""
    if not isinstance(state, Operations):
        raise ConfigurationError(
            f"the state store {state.describe()} cannot list or describe workflows: it does not implement "
            "dramatiq_encore.state.operations.Operations (MemoryState and RedisState do)"
        )
    return state


@dataclasses.dataclass
class Folded:
    """One invocation's stored state with its journal parsed and folded by kind."""

    invocation_id: str
    stored: StoredInvocation
    entries: list[JournalEntry]
    steps: dict[int, AnyStep] = dataclasses.field(default_factory=dict)
    results: dict[int, ResolvedEntry] = dataclasses.field(default_factory=dict)
    values: list[ValueEntry] = dataclasses.field(default_factory=list)
    signals: list[SignalEntry] = dataclasses.field(default_factory=list)
    cancelled: bool = False

    @classmethod
    def of(cls, invocation_id: str, stored: StoredInvocation) -> Folded:
        folded = cls(invocation_id, stored, [journal_entry.validate_json(text) for text in stored.journal])
        for entry in folded.entries:
            if isinstance(entry, StepEntry | TimerEntry | WaitEntry):
                folded.steps[entry.n] = entry
            elif isinstance(entry, ResolvedEntry):
                folded.results.setdefault(entry.n, entry)
            elif isinstance(entry, ValueEntry):
                folded.values.append(entry)
            elif isinstance(entry, SignalEntry):
                folded.signals.append(entry)
            elif isinstance(entry, CancelEntry):
                folded.cancelled = True
        return folded

    def children(self) -> list[str]:
        return [step.child for _, step in sorted(self.steps.items()) if isinstance(step, StepEntry)]


def read_tree(state: StateBackend, workflow_id: str) -> dict[str, Folded]:
    """Every invocation of the tree under ``workflow_id`` that the store holds, level by level
    (one round trip per level). Raises :class:`UnknownWorkflow` when the id has no record."""
    ops = operations(state)
    found: dict[str, Folded] = {}
    level = [workflow_id]
    while level:
        stored = ops.read_invocations(level)
        level = []
        for invocation_id, invocation in stored.items():
            if invocation is not None:
                folded = found[invocation_id] = Folded.of(invocation_id, invocation)
                level += [child for child in folded.children() if child not in found]
    if workflow_id not in found:
        raise unknown(state, workflow_id)
    return found


def unknown(state: StateBackend, workflow_id: str) -> EncoreError:
    lost = state.lost_reason(workflow_id)
    if lost is not None:
        return UnknownWorkflow(
            f"workflow {workflow_id!r} is lost: a message named it ({lost}) but the store {state.describe()} has "
            "no record of it (Redis restarted without persistence, evicted or was flushed)"
        )
    note = operations(state).notes([workflow_id]).get(workflow_id)
    if note is not None:
        return UnknownWorkflow(f"workflow {workflow_id!r} was never created: {note}")
    return UnknownWorkflow(
        f"no workflow {workflow_id!r} in the store {state.describe()}: no start message ever named it, or it "
        "finished longer ago than the retention (ENCORE_RETENTION); check the id with `encore list`. If you "
        "sent its start, is a worker serving its queue? A worker that lacks the task dead-letters the message "
        "to <queue>.XQ"
    )


def encode_cursor(after: After) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(after)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> After:
    try:
        started, workflow_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(started), str(workflow_id)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid cursor {cursor!r}: pass back the cursor a page returned ({exc})") from None
