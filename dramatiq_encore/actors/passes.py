"""One pass over one invocation, as the runtime runs it: the task's arguments in, a commit out.

:func:`run` wraps the pure engine (a :class:`.replay.Pass`) with what a task adds to it:
its arguments decoded from the record, the answers to what the pass asks for (fetched by
the caller between its steps), dramatiq's time limit, the result encoded and held to the
payload limit, the next run's record when the workflow continued as new.
:func:`commit_of` turns the pass's outcome into the one atomic write the state store applies,
and :func:`will_retry` asks dramatiq's retry rule whether a failed pass is tried again.
A :class:`PassTimer` times a pass for :class:`~dramatiq_encore.observe.hooks.PassEnded`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dramatiq import Broker
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Retries
from dramatiq.middleware.shutdown import Shutdown
from dramatiq.threading import Interrupt

from ..broker_config.middleware import dramatiq_loop
from ..errors import PayloadTooLarge
from ..state.backend import Commit
from ..state.models import Outcome, StepEntry, TimerEntry, WaitEntry, step_record
from . import coroutines
from .codec import ArgumentError, InvalidJSON, ResultError, check_size
from .pass_state import JournalOut, Needs
from .records import next_run
from .replay import Pass, PassOutcome, Snapshot, error_info

if TYPE_CHECKING:
    from .task import Task


# Async tasks' passes run on the event loop of dramatiq's AsyncIO middleware (actors/coroutines.py).
coroutines.use_loop(dramatiq_loop)


#: Fetches what a pass needs from the store (a data value) between two of its steps.
Answer = Callable[[Needs], Any]


class PassTimer:
    """When a pass began, and when it first recorded something (a value, a step) that its
    snapshot did not hold: its replay ended there. A pass over no history replays nothing; one
    that records nothing new (it resumes to wait again, or returns) counts as replay whole."""

    __slots__ = ("new_ground", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.new_ground: float | None = None

    def times(self) -> tuple[float, float]:
        """Seconds of the pass so far, and of its replay."""
        now = time.perf_counter()
        return now - self.started, (self.new_ground if self.new_ground is not None else now) - self.started


class _Entries(list[JournalOut]):
    """A pass's new journal entries, noting when the first one is appended."""

    __slots__ = ("_timer",)

    def __init__(self, timer: PassTimer) -> None:
        super().__init__()
        self._timer = timer

    def append(self, entry: JournalOut) -> None:
        if self._timer.new_ground is None:
            self._timer.new_ground = time.perf_counter()
        super().append(entry)


def begin(
    task: Task[Any, Any],
    snapshot: Snapshot,
    origin: str,
    max_payload: int,
    *,
    speculative: bool = False,
    timer: PassTimer | None = None,
) -> Pass | PassOutcome:
    """A pass of ``task`` over ``snapshot``, not started yet (``timer`` starts now); or the
    outcome of a task whose recorded arguments no longer fit its signature (it fails at once)."""
    if timer is not None:
        timer.started = time.perf_counter()
        if not snapshot.steps and not snapshot.values:
            timer.new_ground = timer.started  # no history: nothing to replay
    record = snapshot.meta.record
    try:
        args, kwargs = task.codec.load_args(record.args, record.kwargs)
    except ArgumentError as exc:
        return PassOutcome("failed", error=error_info(exc), exception=exc)
    clock = task._app.clock.utc_now  # the real clock, or the testing kit's virtual one
    step = Pass(
        snapshot, task.fn, args, kwargs, clock=clock, origin=origin, max_payload=max_payload, speculative=speculative
    )
    if timer is not None:
        # The engine appends every entry a pass records to this list (PassState._append):
        # the first append is where the pass leaves its recorded history.
        step.context.entries = _Entries(timer)
    return step


def complete(
    task: Task[Any, Any], step: Pass, result: PassOutcome | Needs, answer: Answer, max_payload: int
) -> PassOutcome:
    """Answer what the pass asks until it ends, then encode its result (held to the payload
    limit) or the next run's record; never raises for what the task does."""
    try:
        while isinstance(result, Needs):
            result = step.answer(answer(result))
    except Interrupt as exc:  # dramatiq's time limit (a shutdown propagates)
        step.abandon()
        if isinstance(exc, Shutdown):
            raise
        return PassOutcome("failed", error=error_info(exc), exception=exc, retryable=True)
    except BaseException:  # the store failed while the pass waited: nothing of it counts
        step.abandon()
        raise
    return _encoded(task, step.snapshot, result, max_payload)


def run(
    task: Task[Any, Any],
    snapshot: Snapshot,
    origin: str,
    max_payload: int,
    answer: Answer,
    timer: PassTimer | None = None,
) -> PassOutcome:
    """One pass that holds the lease: :func:`begin`, start, :func:`complete`."""
    step = begin(task, snapshot, origin, max_payload, timer=timer)
    if isinstance(step, PassOutcome):
        return step
    try:
        result = step.start()
    except Interrupt as exc:
        if isinstance(exc, Shutdown):
            raise
        return PassOutcome("failed", error=error_info(exc), exception=exc, retryable=True)
    return complete(task, step, result, answer, max_payload)


def _encoded(task: Task[Any, Any], snapshot: Snapshot, outcome: PassOutcome, max_payload: int) -> PassOutcome:
    try:
        if outcome.status == "succeeded":
            outcome.value = task.codec.dump_result(outcome.value)
            check_size(f"result of {task.name}", outcome.value, max_payload)
        elif outcome.continued is not None:
            args, kwargs = task.codec.dump_args(*outcome.continued)
            check_size(f"arguments of {task.name}", [args, kwargs], max_payload)
            outcome.value = next_run(snapshot.meta.record, args, kwargs, outcome.last_step)
    except (ResultError, PayloadTooLarge, ArgumentError, InvalidJSON) as exc:
        return PassOutcome("failed", error=error_info(exc), exception=exc)
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
    data = {snapshot.meta.record.identity.workflow_id: outcome.data_writes} if outcome.data_writes else {}
    steps = _recorded_steps(snapshot, outcome)
    if outcome.status == "continued":  # a new run; children this pass started still run
        carried = [signal.model_dump_json() for signal in outcome.unconsumed]
        return Commit(
            entries=carried, status="running", data=data, seen=snapshot.length, reset=outcome.value, steps=steps
        )
    return Commit(
        entries=[entry.model_dump_json() for entry in outcome.entries],
        steps=steps,
        status=outcome.status,
        outcome=outcome_of(snapshot, outcome) if outcome.finished else None,
        waiting=outcome.waiting,
        data=data,
        signals=outcome.waiting_signals,
        wake_any=outcome.wake_any,
        claims=outcome.claims,
        seen=snapshot.length,
    )


def _recorded_steps(snapshot: Snapshot, outcome: PassOutcome) -> dict[int, str]:
    """What the pass's new steps recorded, for the store to check their triggers against."""
    record = snapshot.meta.record
    return {
        entry.n: step_record(record, entry)
        for entry in outcome.entries
        if isinstance(entry, StepEntry | TimerEntry | WaitEntry)
    }
