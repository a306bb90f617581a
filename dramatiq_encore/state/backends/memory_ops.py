"""The in-memory store's reads and the operator's side (index, tree reads, retry, fork).

Mixed into :class:`~.memory.MemoryState`: every method is one critical section under its
lock, as every Redis primitive is one script.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from ...errors import StateLost
from ..models import ACTIVE, FINISHED, InvocationMeta, InvocationRecord, Outcome
from ..operations import After, IndexRow, Operations, StoredInvocation
from .memory_index import MemoryIndex


@dataclasses.dataclass
class MemoryInvocation:
    record: InvocationRecord
    status: str = "pending"
    outcome: Outcome | None = None
    journal: list[str] = dataclasses.field(default_factory=list)
    triggers: set[str] = dataclasses.field(default_factory=set)
    resolved: set[int] = dataclasses.field(default_factory=set)
    waiting: set[int] = dataclasses.field(default_factory=set)
    signals: set[str] = dataclasses.field(default_factory=set)
    wake_any: bool = False
    lock_token: str | None = None
    lock_until: float = 0.0
    #: What each step recorded (see ``step_record``), the last step of the runs before this
    #: one, and the signals received and not consumed yet.
    steps: dict[int, str] = dataclasses.field(default_factory=dict)
    first: int = 0
    sigs: int = 0
    passes: int = 0
    finished: float | None = None

    def meta(self) -> InvocationMeta:
        return InvocationMeta(record=self.record, status=self.status, outcome=self.outcome, signals_waiting=self.sigs)


class MemoryOperations(Operations):
    _invocations: dict[str, MemoryInvocation]
    _data: dict[str, dict[str, str]]
    _lost: dict[str, str]
    _index: MemoryIndex
    _notes: dict[str, str]
    _cond: threading.Condition

    # -- the index: every status change goes through _set_status ------------------------
    def _indexed(self, inv: MemoryInvocation) -> None:
        if inv.record.parent is None:
            self._index.add(inv.record.invocation_id, inv.record.task, inv.status, int(time.time() * 1000))

    def _set_status(self, inv: MemoryInvocation, status: str) -> None:
        inv.status = status
        if inv.record.parent is None:
            self._index.set_status(inv.record.invocation_id, status, inv.finished)

    def list_index(
        self, status: str | None, workflow_type: str | None, limit: int, after: After | None
    ) -> list[IndexRow]:
        with self._cond:
            return self._index.page(status, workflow_type, limit, after)

    def count_index(self, status: str) -> int:
        with self._cond:
            return self._index.count(status)

    def read_invocations(self, invocation_ids: list[str]) -> dict[str, StoredInvocation | None]:
        with self._cond:
            found: dict[str, StoredInvocation | None] = {}
            for invocation_id in invocation_ids:
                inv = self._invocations.get(invocation_id)
                found[invocation_id] = (
                    None
                    if inv is None
                    else StoredInvocation(inv.meta(), list(inv.journal), passes=inv.passes, finished=inv.finished)
                )
            return found

    def reopen(self, record: InvocationRecord, expect_run: int, entries: list[str], signals: int) -> str | None:
        with self._cond:
            inv = self._invocations.get(record.invocation_id)
            if inv is None:
                return "no such workflow"
            if inv.status != "failed":
                return f"it is {inv.status}, not failed"
            if inv.record.run != expect_run:
                return f"it changed meanwhile (run {inv.record.run})"
            if inv.record.parent is not None:
                return "it is not a root workflow (retry its root)"
            if inv.lock_token is not None and inv.lock_until > time.monotonic():
                return "a worker holds it"
            inv.record, inv.journal, inv.resolved, inv.steps = record, list(entries), set(), {}
            inv.first, inv.sigs, inv.outcome, inv.finished = record.first_step, signals, None, None
            inv.waiting, inv.signals, inv.wake_any = set(), set(), False
            self._set_status(inv, "pending")
            return None

    def note(self, invocation_id: str, text: str) -> None:
        with self._cond:
            self._notes[invocation_id] = text

    def notes(self, invocation_ids: list[str]) -> dict[str, str]:
        with self._cond:
            return {i: self._notes[i] for i in invocation_ids if i in self._notes}

    def seed(self, record: InvocationRecord, entries: list[str], data: dict[str, str]) -> bool:
        with self._cond:
            if record.invocation_id in self._invocations:
                return False
            inv = self._invocations[record.invocation_id] = MemoryInvocation(record=record, journal=list(entries))
            inv.triggers.add("start")
            self._indexed(inv)
            self._data.setdefault(record.identity.workflow_id, {}).update(data)
            return True

    # -- reads --------------------------------------------------------------------------
    def get_meta(self, invocation_id: str) -> InvocationMeta | None:
        with self._cond:
            inv = self._invocations.get(invocation_id)
            return None if inv is None else inv.meta()

    def read_data(self, workflow_id: str, key: str) -> tuple[bool, str | None]:
        with self._cond:
            values = self._data.get(workflow_id, {})
            return (key in values, values.get(key))

    def workflow_data(self, workflow_id: str) -> dict[str, str]:
        with self._cond:
            return dict(self._data.get(workflow_id, {}))

    def timer_due(self, invocation_id: str, step: int) -> float | None:
        with self._cond:
            inv = self._invocations.get(invocation_id)
            if inv is None or inv.status not in ACTIVE or step in inv.resolved:
                return None
            recorded = inv.steps.get(step, "")
            return float(recorded[2:]) if recorded.startswith("t:") else None

    def lost_reason(self, invocation_id: str) -> str | None:
        with self._cond:
            return None if invocation_id in self._invocations else self._lost.get(invocation_id)

    def needs_result(self, invocation_id: str) -> bool:
        with self._cond:
            inv = self._invocations.get(invocation_id)
            return inv is not None and inv.status in ACTIVE

    def existing(self, invocation_ids: list[str]) -> list[bool]:
        with self._cond:
            return [i in self._invocations for i in invocation_ids]

    def wait_finished(self, invocation_id: str, timeout: float | None) -> InvocationMeta | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                inv = self._invocations.get(invocation_id)
                if inv is not None and inv.status in FINISHED:
                    return inv.meta()
                if inv is None and invocation_id in self._lost:
                    raise StateLost(invocation_id, self.describe(), self._lost[invocation_id])
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None if inv is None else inv.meta()
                self._cond.wait(remaining)

    def describe(self) -> str:
        return "in-memory state"
