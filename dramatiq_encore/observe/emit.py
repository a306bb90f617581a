"""What the runtime tells its observers: :mod:`.hooks` events built from its records,
snapshots and commits, at the points of :mod:`dramatiq_encore.actors.runtime` and
:mod:`~dramatiq_encore.actors.fast` that recorded what they describe.

Each function builds its event only when something listens (``kind in events.heard``): with
no listener, an emission point costs a call and a set lookup. None of them raises into the
engine: a failure to observe is logged at debug level and forgotten.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..state.models import AnyStep, InvocationRecord, ResolvedEntry, StepEntry, TimerEntry, WaitEntry
from .hooks import PassEnded, StepResolved, WorkflowFinished, WorkflowStarted, events

if TYPE_CHECKING:
    from ..actors.passes import PassTimer
    from ..actors.replay import PassOutcome, Snapshot
    from ..state.backend import StateBackend, Trigger

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., None])


def _quiet(fn: F) -> F:
    """Observing never breaks a pass: whatever fails here is logged and swallowed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            logger.debug("could not observe %s", fn.__name__, exc_info=True)

    return wrapper  # type: ignore[return-value]


def started(record: InvocationRecord) -> None:
    """A delivery created the invocation of ``record``."""
    if WorkflowStarted in events.heard:
        _started(record)


@_quiet
def _started(record: InvocationRecord) -> None:
    identity = record.identity
    events.emit(
        WorkflowStarted(
            invocation_id=record.invocation_id,
            workflow_id=identity.workflow_id,
            workflow_type=identity.workflow_type,
            root=record.parent is None,
            task=record.task,
        )
    )


def finished(record: InvocationRecord, status: str) -> None:
    """A commit finished the invocation of ``record`` with ``status``."""
    if WorkflowFinished in events.heard:
        _finished(record, status)


@_quiet
def _finished(record: InvocationRecord, status: str) -> None:
    identity = record.identity
    events.emit(
        WorkflowFinished(
            invocation_id=record.invocation_id,
            workflow_id=identity.workflow_id,
            workflow_type=identity.workflow_type,
            status=status,
            root=record.parent is None,
            task=record.task,
            created_at=record.created_at or None,
        )
    )


def pass_ended(snapshot: Snapshot, status: str, timer: PassTimer) -> None:
    """A pass over ``snapshot`` ran and ended with ``status`` (its outcome is used)."""
    if PassEnded in events.heard:
        _pass_ended(snapshot, status, timer)


@_quiet
def _pass_ended(snapshot: Snapshot, status: str, timer: PassTimer) -> None:
    seconds, replay = timer.times()
    record = snapshot.meta.record
    identity = record.identity
    events.emit(
        PassEnded(
            invocation_id=record.invocation_id,
            workflow_id=identity.workflow_id,
            workflow_type=identity.workflow_type,
            status=status,
            replay_seconds=replay,
            seconds=seconds,
            root=record.parent is None,
            task=record.task,
        )
    )


def step_name(step: AnyStep) -> str:
    """What a step is, for its event: the child's task, ``timer`` or ``signal:<name>``."""
    if isinstance(step, StepEntry):
        return step.task
    if isinstance(step, TimerEntry):
        return "timer"
    return f"signal:{step.name}"


def _started_at(step: AnyStep) -> float | None:
    """When the step was recorded: its ``t``, else (a journal written before ``t``) a timer's
    due time less its duration."""
    if step.t is not None:
        return step.t
    if isinstance(step, TimerEntry):
        return step.due - step.seconds
    if isinstance(step, WaitEntry) and step.due is not None and step.timeout is not None:
        return step.due - step.timeout
    return None


def _emit_step(record: InvocationRecord, step: AnyStep, ok: bool, resolved_at: float) -> None:
    events.emit(
        StepResolved(
            invocation_id=record.invocation_id,
            workflow_id=record.identity.workflow_id,
            n=step.n,
            task=step_name(step),
            child=step.child if isinstance(step, StepEntry) else None,
            ok=ok,
            started_at=_started_at(step),
            resolved_at=resolved_at,
        )
    )


def resolved(snapshot: Snapshot, n: int, resolved_at: float) -> None:
    """Step ``n``, whose resolution this process's delivery recorded, as ``snapshot`` holds it."""
    if StepResolved in events.heard:
        _resolved(snapshot, n, resolved_at)


@_quiet
def _resolved(snapshot: Snapshot, n: int, resolved_at: float) -> None:
    step = snapshot.steps.get(n)
    if step is not None:
        outcome = snapshot.results.get(n)
        _emit_step(snapshot.meta.record, step, outcome is None or outcome.ok, resolved_at)


def claimed(snapshot: Snapshot, outcome: PassOutcome) -> None:
    """The wait steps a committed pass resolved itself (it consumed their signals)."""
    if outcome.claims and StepResolved in events.heard:
        _claimed(snapshot, outcome)


@_quiet
def _claimed(snapshot: Snapshot, outcome: PassOutcome) -> None:
    steps: dict[int, AnyStep] = dict(snapshot.steps)
    times: dict[int, float | None] = {}
    for entry in outcome.entries:
        if isinstance(entry, StepEntry | TimerEntry | WaitEntry):
            steps[entry.n] = entry
        elif isinstance(entry, ResolvedEntry):
            times[entry.n] = entry.t
    for n in outcome.claims:
        if n in steps:
            _emit_step(snapshot.meta.record, steps[n], True, times.get(n) or time.time())


def resolved_unheld(
    state: StateBackend,
    invocation_id: str,
    trigger: Trigger,
    resolved_at: float,
    child: tuple[InvocationRecord, bool] | None = None,
) -> None:
    """A resolution this process's delivery recorded while it got no lease: the invocation's
    snapshot is not at hand. A child's result is described from the child (its record and
    outcome: ``child`` when the caller has them, else read: one small read, only when
    something listens), a timer from the journal (rare: a timer that lost its race)."""
    if StepResolved in events.heard:
        _resolved_unheld(state, invocation_id, trigger, resolved_at, child)


@_quiet
def _resolved_unheld(
    state: StateBackend,
    invocation_id: str,
    trigger: Trigger,
    resolved_at: float,
    child: tuple[InvocationRecord, bool] | None,
) -> None:
    if trigger.step is None:
        return
    if trigger.kind == "timer":
        from ..actors.replay import Snapshot

        meta, entries = state.load(invocation_id, 0)
        if meta is not None:
            snapshot = Snapshot(meta)
            snapshot.apply(entries)
            _resolved(snapshot, trigger.step, resolved_at)
        return
    if child is None and trigger.child is not None:
        meta = state.get_meta(trigger.child)
        if meta is not None and meta.outcome is not None:
            child = (meta.record, meta.outcome.ok)
    if child is None:
        return
    record, ok = child
    identity, parent = record.identity, record.identity.parent_workflow_id
    # A child that started a workflow of its own (force_new_workflow) names its parent's.
    own = parent is not None and identity.workflow_id == record.invocation_id
    events.emit(
        StepResolved(
            invocation_id=invocation_id,
            workflow_id=parent if own and parent is not None else identity.workflow_id,
            n=trigger.step,
            task=record.task,
            child=record.invocation_id,
            ok=ok,
            started_at=record.created_at or None,
            resolved_at=resolved_at,
        )
    )
