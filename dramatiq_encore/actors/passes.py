"""One pass over one invocation, as the runtime runs it: the task's arguments in, a commit out.

:func:`run` wraps the pure engine (:func:`.replay.run_pass`) with what a task adds to it:
its arguments decoded from the record, dramatiq's time limit, the result encoded and held
to the payload limit, the next run's record when the workflow continued as new.
:func:`commit_of` turns the pass's outcome into the one atomic write the state store applies,
and :func:`will_retry` asks dramatiq's retry rule whether a failed pass is tried again.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dramatiq import Broker
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Retries
from dramatiq.middleware.shutdown import Shutdown
from dramatiq.threading import Interrupt

from ..errors import PayloadTooLarge
from ..state.backend import Commit, StateBackend
from ..state.models import Outcome, StepEntry, TimerEntry, WaitEntry, step_record
from .codec import ArgumentError, InvalidJSON, ResultError, check_size
from .context import WorkflowContext
from .records import next_run
from .replay import PassOutcome, Snapshot, error_info, run_pass

if TYPE_CHECKING:
    from .task import Task


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run(
    task: Task[Any, Any],
    snapshot: Snapshot,
    origin: str,
    state: StateBackend,
    max_payload: int,
    gate: Callable[[], bool] | None = None,
) -> PassOutcome:
    """Run ``task``'s function once over ``snapshot``; never raises for what the task does."""
    record = snapshot.meta.record
    read = functools.partial(state.read_data, record.identity.workflow_id)
    ctx = WorkflowContext(snapshot, read_data=read, clock=_utc_now, origin=origin, max_payload=max_payload)
    ctx.gate = gate
    try:
        args, kwargs = task.codec.load_args(record.args, record.kwargs)
    except ArgumentError as exc:
        return PassOutcome("failed", ctx, error=error_info(exc), exception=exc)
    try:
        outcome = run_pass(ctx, task.fn, args, kwargs)
    except Interrupt as exc:  # dramatiq's time limit; a shutdown propagates
        if isinstance(exc, Shutdown):
            raise
        return PassOutcome("failed", ctx, error=error_info(exc), exception=exc, retryable=True)
    try:
        if outcome.status == "succeeded":
            outcome.value = task.codec.dump_result(outcome.value)
            check_size(f"result of {task.name}", outcome.value, max_payload)
        elif outcome.continued is not None:
            args, kwargs = task.codec.dump_args(*outcome.continued)
            check_size(f"arguments of {task.name}", [args, kwargs], max_payload)
            outcome.value = next_run(record, args, kwargs, ctx.last_step)
    except (ResultError, PayloadTooLarge, ArgumentError, InvalidJSON) as exc:
        return PassOutcome("failed", ctx, error=error_info(exc), exception=exc)
    return outcome


def will_retry(broker: Broker, task: Task[Any, Any], message: MessageProxy, exc: BaseException | None) -> bool:
    """Dramatiq's own retry rule (Retries middleware), asked before it runs."""
    middleware = next((m for m in broker.middleware if isinstance(m, Retries)), None)
    if middleware is None or exc is None:
        return False
    options = task.actor.options
    throws = message.options.get("throws") or options.get("throws")
    if throws and isinstance(exc, throws):
        return False
    retries = message.options.get("retries", 0)
    retry_when = options.get("retry_when", middleware.retry_when)
    if retry_when is not None:
        return bool(retry_when(retries, exc))
    max_retries = message.options.get("max_retries", options.get("max_retries", middleware.max_retries))
    return max_retries is None or retries < max_retries


def outcome_of(snapshot: Snapshot, outcome: PassOutcome) -> Outcome:
    """How a finished pass ended, as its invocation records it."""
    if outcome.status == "succeeded":
        return Outcome(ok=True, value=outcome.value, invocation_id=snapshot.meta.record.invocation_id)
    failing = getattr(outcome.exception, "invocation_id", "") or snapshot.meta.record.invocation_id
    return Outcome(ok=False, error=outcome.error, invocation_id=failing)


def commit_of(snapshot: Snapshot, outcome: PassOutcome) -> Commit:
    """Everything the pass writes, for :meth:`~dramatiq_encore.state.StateBackend.commit`."""
    ctx = outcome.context
    data = {snapshot.meta.record.identity.workflow_id: ctx.data_writes} if ctx.data_writes else {}
    steps = _recorded_steps(snapshot, outcome)
    if outcome.status == "continued":  # a new run; children this pass started still run
        carried = [signal.model_dump_json() for signal in ctx.unconsumed_signals()]
        return Commit(
            entries=carried, status="running", data=data, seen=snapshot.length, reset=outcome.value, steps=steps
        )
    return Commit(
        entries=[entry.model_dump_json() for entry in ctx.entries],
        steps=steps,
        status=outcome.status,
        outcome=outcome_of(snapshot, outcome) if outcome.finished else None,
        waiting=ctx.waiting,
        data=data,
        signals=ctx.waiting_signals,
        wake_any=ctx.wake_any,
        claims=ctx.claims,
        seen=snapshot.length,
    )


def _recorded_steps(snapshot: Snapshot, outcome: PassOutcome) -> dict[int, str]:
    """What the pass's new steps recorded, for the store to check their triggers against."""
    record = snapshot.meta.record
    return {
        entry.n: step_record(record, entry)
        for entry in outcome.context.entries
        if isinstance(entry, StepEntry | TimerEntry | WaitEntry)
    }
