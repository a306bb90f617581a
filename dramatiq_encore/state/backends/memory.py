"""In-memory state: embedded mode and users' own tests. Each primitive is one critical section."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import ClassVar

from ..backend import (
    DUE_SLACK_S,
    Commit,
    CommitResult,
    Delivery,
    FirstPass,
    StateBackend,
    Then,
    Trigger,
    deliver_then_commit,
)
from ..models import ACTIVE, FINISHED, InvocationMeta, InvocationRecord, Outcome, ResolvedEntry
from .memory_index import MemoryIndex
from .memory_ops import MemoryInvocation as _Invocation
from .memory_ops import MemoryOperations


def _refused(detail: str, status: str = "pending") -> Delivery:
    return Delivery(verdict="refused", duplicate=False, status=status, detail=detail)


class MemoryState(MemoryOperations, StateBackend, FirstPass):
    """State kept in this process: nothing survives a restart.

    Every instance has its own dictionaries (no class-level shared state), so tests can
    create one per test.
    """

    def __init__(self, *, lease_ms: int | None = None, clock: Callable[[], float] = time.time) -> None:
        """``clock``: the epoch seconds timers are due by (the app's clock: see :mod:`dramatiq_encore.clock`)."""
        self._clock = clock
        if lease_ms is not None:
            self.lease_ms = lease_ms
        self._invocations: dict[str, _Invocation] = {}
        self._data: dict[str, dict[str, str]] = {}
        self._lost: dict[str, str] = {}
        self._index = MemoryIndex()
        self._notes: dict[str, str] = {}
        self._cond = threading.Condition()

    # -- leases -------------------------------------------------------------------------
    def _try_lock(self, inv: _Invocation) -> str | None:
        now = time.monotonic()
        if inv.lock_token is not None and inv.lock_until > now:
            return None
        inv.lock_token = uuid.uuid4().hex
        inv.lock_until = now + self.lease_ms / 1000
        inv.passes += 1
        self._set_status(inv, "running")
        return inv.lock_token

    def _holds(self, inv: _Invocation | None, token: str) -> bool:
        return inv is not None and inv.lock_token == token and inv.lock_until > time.monotonic()

    @staticmethod
    def _runnable(inv: _Invocation) -> bool:
        return inv.status in ACTIVE and not inv.waiting and not inv.signals

    @staticmethod
    def _wake(inv: _Invocation) -> None:
        inv.waiting.clear()
        inv.signals.clear()

    # -- primitives ---------------------------------------------------------------------
    def deliver(
        self,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord | None,
        load_from: int | None = None,
        run: int = 0,
    ) -> Delivery:
        with self._cond:
            inv = self._invocations.get(invocation_id)
            if inv is None:
                inv, created = self._create(invocation_id, trigger, record)
                if inv is None:
                    return created
            elif trigger.kind == "start" and record is not None:
                if record.digest != inv.record.digest:
                    return Delivery(verdict="conflict", duplicate=True, status=inv.status)
                if record.fingerprint != inv.record.fingerprint:
                    step = record.parent.step if record.parent is not None else 0
                    return _refused(f"its parent recorded another task or identity at step {step}")
            if trigger.kind != "start" and inv.status not in ACTIVE:
                detail = f"the invocation is {inv.status}"
                return Delivery(verdict="ignored", duplicate=False, status=inv.status, detail=detail)
            duplicate = trigger.key in inv.triggers
            if not duplicate:
                verdict = self._check(inv, trigger)
                if verdict is not None:
                    return verdict
                inv.triggers.add(trigger.key)
                self._apply(inv, trigger)
            return self._lease(inv, duplicate, load_from, run)

    def _create(
        self, invocation_id: str, trigger: Trigger, record: InvocationRecord | None
    ) -> tuple[_Invocation | None, Delivery]:
        """Create the invocation from a start (a child's only as its parent's step recorded it)."""
        if trigger.kind != "start" or record is None:
            if trigger.kind in ("result", "timer", "signal"):
                return None, self._mark_lost(invocation_id, f"a {trigger.kind} message named it")
            return None, Delivery(verdict="unknown", duplicate=False, status="pending")
        parent = record.parent
        if parent is not None:
            owner = self._invocations.get(parent.invocation_id)
            if owner is None:
                return None, self._mark_lost(parent.invocation_id, "a child start named it")
            recorded = owner.steps.get(parent.step)
            if recorded is None and owner.status in ACTIVE:
                return None, Delivery(verdict="early", duplicate=False, status="pending")
            if recorded is None:
                return None, _refused(f"its parent finished without recording step {parent.step}")
            if recorded != "c:" + record.fingerprint:
                return None, _refused(f"its parent recorded another task, arguments or identity at step {parent.step}")
        self._lost.pop(invocation_id, None)  # started again after it was marked lost
        inv = self._invocations[invocation_id] = _Invocation(record=record)
        self._indexed(inv)
        return inv, Delivery(verdict="ok", duplicate=False, status="pending")

    def _mark_lost(self, invocation_id: str, why: str) -> Delivery:
        self._lost[invocation_id] = why
        self._cond.notify_all()
        return Delivery(verdict="unknown", duplicate=False, status="pending", detail="lost")

    def _check(self, inv: _Invocation, trigger: Trigger) -> Delivery | None:
        """Why a new trigger is not accepted now (a reply for the caller), or None."""
        if trigger.kind == "signal" and inv.sigs >= trigger.limit:
            return _refused(f"{inv.sigs} signals are waiting to be consumed, the limit", inv.status)
        if trigger.kind not in ("result", "timer"):
            return None
        assert trigger.step is not None
        if trigger.step <= inv.first:
            return Delivery(verdict="ignored", duplicate=False, status=inv.status, detail="a step of an earlier run")
        recorded = inv.steps.get(trigger.step, "")
        if trigger.kind == "result":
            return self._check_result(inv, trigger, recorded)
        if not recorded.startswith("t:"):
            return _refused(f"no timer is recorded at step {trigger.step}")
        due = float(recorded[2:])
        if trigger.due != due:
            return _refused(f"step {trigger.step} is due at {recorded[2:]}, not {trigger.due!r}")
        if self._clock() < due - DUE_SLACK_S:
            return Delivery(verdict="due", duplicate=False, status=inv.status, detail=recorded[2:])
        return None

    def _check_result(self, inv: _Invocation, trigger: Trigger, recorded: str) -> Delivery | None:
        if not recorded.startswith("c:"):
            return _refused(f"no child task is recorded at step {trigger.step}")
        child = self._invocations.get(trigger.child or "")
        if child is None:
            return Delivery(verdict="early", duplicate=False, status=inv.status, detail="the child has no record yet")
        if child.record.fingerprint != recorded[2:]:
            return _refused(f"the reporting child is not the one step {trigger.step} started")
        if child.outcome is None:
            return Delivery(
                verdict="early", duplicate=False, status=inv.status, detail="the child has recorded no outcome"
            )
        return None

    def _lease(self, inv: _Invocation, duplicate: bool, load_from: int | None, run: int) -> Delivery:
        if not self._runnable(inv):
            return Delivery(verdict="ok", duplicate=duplicate, status=inv.status)
        token = self._try_lock(inv)
        if token is None:
            return Delivery(verdict="ok", duplicate=duplicate, status=inv.status, locked=True)
        if load_from is None:
            return Delivery(verdict="ok", duplicate=duplicate, status=inv.status, token=token)
        start = load_from if load_from <= len(inv.journal) and run == inv.record.run else 0
        return Delivery(
            verdict="ok",
            duplicate=duplicate,
            status=inv.status,
            token=token,
            record=inv.record if start == 0 else None,
            entries=tuple(inv.journal[start:]),
            loaded_from=start,
        )

    def _apply(self, inv: _Invocation, trigger: Trigger) -> None:
        self._APPLY[trigger.kind](self, inv, trigger)

    # One branch per message kind (messages.KINDS), as deliver.lua has.
    def _apply_start(self, inv: _Invocation, trigger: Trigger) -> None:
        """Nothing more: the start created the invocation (see :meth:`_create`)."""

    def _apply_result(self, inv: _Invocation, trigger: Trigger) -> None:
        assert trigger.step is not None and trigger.child is not None
        child = self._invocations[trigger.child]
        assert child.outcome is not None
        self._resolve(inv, trigger.step, child.outcome)

    def _apply_timer(self, inv: _Invocation, trigger: Trigger) -> None:
        assert trigger.step is not None and trigger.outcome is not None
        self._resolve(inv, trigger.step, trigger.outcome)

    def _apply_signal(self, inv: _Invocation, trigger: Trigger) -> None:
        assert trigger.entry is not None
        inv.journal.append(trigger.entry)
        inv.sigs += 1
        if trigger.name in inv.signals:
            inv.signals.discard(trigger.name)
            if inv.wake_any:
                self._wake(inv)

    def _apply_cancel(self, inv: _Invocation, trigger: Trigger) -> None:
        assert trigger.entry is not None
        inv.journal.append(trigger.entry)
        self._wake(inv)

    _APPLY: ClassVar[dict[str, Callable[[MemoryState, _Invocation, Trigger], None]]] = {
        "start": _apply_start,
        "result": _apply_result,
        "timer": _apply_timer,
        "signal": _apply_signal,
        "cancel": _apply_cancel,
    }

    def _resolve(self, inv: _Invocation, step: int, outcome: Outcome) -> None:
        if step in inv.resolved:
            return
        inv.resolved.add(step)
        inv.journal.append(ResolvedEntry(n=step, o=outcome, t=time.time()).model_dump_json())
        if step in inv.waiting:
            inv.waiting.discard(step)
            if inv.wake_any:
                self._wake(inv)

    def finish_first_pass(
        self,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord,
        commit: Commit,
        then: Then | None = None,
    ) -> tuple[Delivery, CommitResult | None, Delivery | None]:
        return deliver_then_commit(self, invocation_id, trigger, record, commit, then)

    def acquire(self, invocation_id: str) -> str | None:
        """Take the lease if the invocation is runnable and free (tests and admin tools)."""
        with self._cond:
            inv = self._invocations.get(invocation_id)
            if inv is None or not self._runnable(inv):
                return None
            return self._try_lock(inv)

    def load(self, invocation_id: str, start: int) -> tuple[InvocationMeta | None, list[str]]:
        with self._cond:
            inv = self._invocations.get(invocation_id)
            if inv is None:
                return None, []
            return inv.meta(), inv.journal[start:]

    def commit(self, invocation_id: str, token: str, commit: Commit) -> CommitResult:
        with self._cond:
            inv = self._invocations.get(invocation_id)
            if inv is None or not self._holds(inv, token):
                return CommitResult(ok=False)
            if inv.resolved.intersection(commit.claims):
                return CommitResult(ok=False, rerun=True)  # stale: a timer resolved a claimed step
            if commit.empty_only and (inv.journal or inv.record.run):
                return CommitResult(ok=False, rerun=True)  # stale: the pass assumed the empty state
            grew = commit.seen is not None and len(inv.journal) > commit.seen
            if commit.reset is not None:
                if grew:
                    return CommitResult(ok=False, rerun=True)  # stale: carry over what arrived
                inv.record, inv.journal, inv.resolved, inv.steps = commit.reset, [], set(), {}
                inv.first, inv.sigs = commit.reset.first_step, len(commit.entries)  # carried signals
            else:
                inv.sigs -= len(commit.claims)  # each claim consumed a signal
            at = None if commit.reset is not None else len(inv.journal)
            inv.journal.extend(commit.entries)
            inv.resolved.update(commit.claims)
            inv.steps.update(commit.steps)
            for workflow_id, values in commit.data.items():
                self._data.setdefault(workflow_id, {}).update(values)
            if commit.status in FINISHED:
                inv.outcome, inv.finished = commit.outcome, time.time()
                self._set_status(inv, commit.status)
                self._wake(inv)
            elif commit.reset is None and self._suspend(inv, commit, grew):
                self._set_status(inv, "suspended")
            else:
                self._wake(inv)
                inv.lock_until = time.monotonic() + self.lease_ms / 1000
                return CommitResult(ok=True, rerun=True, appended_at=at)
            inv.lock_token = None
            self._cond.notify_all()
            return CommitResult(ok=True, appended_at=at)

    def _suspend(self, inv: _Invocation, commit: Commit, grew: bool) -> bool:
        """Set what the invocation waits on; False when it can run again at once."""
        awaited = set(commit.waiting)
        pending = awaited - inv.resolved
        woken = grew or (commit.wake_any and pending != awaited)
        if woken or not (pending or commit.signals):
            self._wake(inv)
            return False
        inv.waiting, inv.signals, inv.wake_any = pending, set(commit.signals), commit.wake_any
        return True

    def release(self, invocation_id: str, token: str) -> None:
        with self._cond:
            inv = self._invocations.get(invocation_id)
            if inv is not None and inv.lock_token == token:
                inv.lock_token = None

    def renew(self, invocation_id: str, token: str) -> bool:
        with self._cond:
            inv = self._invocations.get(invocation_id)
            if not self._holds(inv, token):
                return False
            assert inv is not None
            inv.lock_until = time.monotonic() + self.lease_ms / 1000
            return True

    def describe(self) -> str:
        return "in-memory state"
