"""``list_workflows``, ``describe`` and ``export``: the store's records as operator views."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ..state.backend import StateBackend
from ..state.models import ACTIVE, AnyStep, ResolvedEntry, StepEntry, TimerEntry, ValueEntry
from ..state.operations import IndexRow
from ..views import (
    History,
    InvocationHistory,
    InvocationView,
    RecordedValue,
    SignalView,
    StepView,
    WorkflowDescription,
    WorkflowPage,
    WorkflowSummary,
)
from .tree import Folded, decode_cursor, encode_cursor, operations, read_tree

MAX_PAGE = 1000


def _time(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


def list_workflows(
    state: StateBackend, status: str | None, workflow_type: str | None, limit: int, cursor: str | None
) -> WorkflowPage:
    limit = max(1, min(limit, MAX_PAGE))
    after = None if cursor is None else decode_cursor(cursor)
    rows = operations(state).list_index(status, workflow_type, limit + 1, after)
    items = [_summary(row) for row in rows[:limit]]
    more = len(rows) > limit
    return WorkflowPage(
        items=items, cursor=encode_cursor((rows[limit - 1].started_ms, rows[limit - 1].workflow_id)) if more else None
    )


def _summary(row: IndexRow) -> WorkflowSummary:
    started = _time(row.started_ms / 1000)
    assert started is not None
    return WorkflowSummary(
        workflow_id=row.workflow_id,
        type=row.type,
        status=row.status,
        started_at=started,
        finished_at=_time(row.finished),
    )


def describe(state: StateBackend, workflow_id: str) -> WorkflowDescription:
    tree = read_tree(state, workflow_id)
    missing = [child for folded in tree.values() for child in folded.children() if child not in tree]
    notes = operations(state).notes(missing) if missing else {}
    view = _invocation(tree, workflow_id, notes)
    data = {key: json.loads(value) for key, value in state.workflow_data(view.workflow_id).items()}
    return WorkflowDescription(**dict(view), data=data)


def _invocation(tree: dict[str, Folded], invocation_id: str, notes: dict[str, str]) -> InvocationView:
    folded = tree[invocation_id]
    meta = folded.stored.meta
    record, outcome = meta.record, meta.outcome
    consumed = {
        str(res.o.value.get("id")) for res in folded.results.values() if isinstance(res.o.value, dict) and res.o.ok
    }
    return InvocationView(
        invocation_id=invocation_id,
        workflow_id=record.identity.workflow_id,
        type=record.task,
        status=meta.status,
        queue=record.queue,
        started_at=_time(record.created_at or None),
        finished_at=_time(folded.stored.finished),
        passes=folded.stored.passes,
        run=record.run,
        args=record.args,
        kwargs=record.kwargs,
        result=outcome.value if outcome is not None and outcome.ok else None,
        error=None if outcome is None else outcome.error,
        values=[RecordedValue(kind=v.k, name=v.name, value=_value(v)) for v in folded.values],
        signals=[
            SignalView(signal_id=s.id, name=s.name, payload=s.payload, consumed=s.id in consumed)
            for s in folded.signals
        ],
        cancel_requested=folded.cancelled,
        steps=[_step(tree, folded, step, notes) for _, step in sorted(folded.steps.items())],
    )


def _value(entry: ValueEntry) -> Any:
    if entry.k == "set_data" and isinstance(entry.v, str):
        return json.loads(entry.v)  # recorded as the JSON text it wrote
    return entry.v


def _step(tree: dict[str, Folded], parent: Folded, step: AnyStep, notes: dict[str, str]) -> StepView:
    resolved = parent.results.get(step.n)
    # Numbered as the code counts them: the first step of this run is 1 (a continued or
    # retried run records its steps after those of the runs before).
    n = step.n - parent.stored.meta.record.first_step
    view = StepView(n=n, kind="task", task="", status="", started_at=_time(step.t))
    if resolved is not None:
        view.finished_at = _time(resolved.t)
        if step.t is not None and resolved.t is not None:
            view.duration_s = max(0.0, resolved.t - step.t)
        view.status = "succeeded" if resolved.o.ok else "failed"
        view.result, view.error = resolved.o.value, resolved.o.error
    if isinstance(step, StepEntry):
        return _task_step(tree, parent, step, view, resolved, notes)
    view.due_at = _time(step.due)
    if isinstance(step, TimerEntry):
        view.kind, view.task = "timer", "sleep"
        view.note = "" if resolved else "a durable timer: it fires at due_at"
    else:
        view.kind, view.task = "signal", f"wait_for_signal:{step.name}"
        if resolved is not None and resolved.o.value is None:
            view.status, view.note = "timed out", "no signal came before due_at"
        elif resolved is None:
            view.note = f"waiting for signal {step.name!r}: send it with `encore signal ID {step.name} JSON`"
    if resolved is None:
        view.status = "waiting" if parent.stored.meta.status in ACTIVE else "abandoned"
    return view


def _task_step(
    tree: dict[str, Folded],
    parent: Folded,
    step: StepEntry,
    view: StepView,
    resolved: ResolvedEntry | None,
    notes: dict[str, str],
) -> StepView:
    view.task, view.queue, view.args_digest = step.task, step.queue, step.digest
    view.args, view.kwargs = step.args, step.kwargs
    child = tree.get(step.child)
    if child is not None:
        view.child = _invocation(tree, step.child, notes)
        view.attempts = child.stored.passes
    if resolved is not None:
        return view
    if parent.stored.meta.status not in ACTIVE:
        view.status = "abandoned"
    elif child is None:
        view.status = "queued"
        view.note = notes.get(step.child) or (
            f"its start message went to queue {step.queue!r} and no worker has taken it yet: is a worker running "
            f"that serves queue {step.queue!r} and declares task {step.task!r}? (see `encore show` in the README's "
            "'a workflow is stuck' guide)"
        )
    else:
        view.status = child.stored.meta.status
    return view


def export(state: StateBackend, workflow_id: str, now: dt.datetime | None = None) -> History:
    tree = read_tree(state, workflow_id)
    data: dict[str, Any] = {}
    for folded in tree.values():
        identity = folded.stored.meta.record.identity
        if identity.workflow_id == folded.invocation_id:  # a workflow (the root or a child workflow)
            values = state.workflow_data(identity.workflow_id)
            if values:
                data[identity.workflow_id] = {key: json.loads(value) for key, value in values.items()}
    invocations = [
        InvocationHistory(
            invocation_id=invocation_id,
            status=folded.stored.meta.status,
            record=folded.stored.meta.record.model_dump(mode="json"),
            outcome=None if folded.stored.meta.outcome is None else folded.stored.meta.outcome.model_dump(mode="json"),
            journal=[json.loads(text) for text in folded.stored.journal],
        )
        for invocation_id, folded in tree.items()
    ]
    return History(
        workflow_id=workflow_id, exported_at=now or dt.datetime.now(dt.UTC), data=data, invocations=invocations
    )
