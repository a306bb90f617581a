"""Step operations: child tasks (one, several in parallel, with a deadline), timers, signals.

Steps are positional: each operation below takes the next step number and, on replay,
checks that the journal recorded the same kind of step there (same task and argument
digest, same timer duration, same signal name), else the invocation fails with
:class:`NonDeterminismError`. Starting a step never blocks; waiting for steps suspends the
pass, and the runtime wakes the invocation when what it waits on is resolved.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from ..errors import MisuseError, StepTimeout, TaskError
from ..identity import child_invocation_id
from ..invocation import Invocation
from ..state.models import (
    AnyStep,
    Outcome,
    ResolvedEntry,
    StepEntry,
    TimerEntry,
    WaitEntry,
)
from .codec import TaskCodec, check_size, digest
from .pass_state import PassState

P = ParamSpec("P")
R = TypeVar("R")
R1 = TypeVar("R1")
R2 = TypeVar("R2")
R3 = TypeVar("R3")
R_co = TypeVar("R_co", covariant=True)


class StepTarget(Protocol):
    """What the engine needs from a task used as a step (``Task`` satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def queue_name(self) -> str: ...
    @property
    def force_new_workflow(self) -> bool: ...
    @property
    def codec(self) -> TaskCodec: ...


class TypedStepTarget(StepTarget, Protocol[P, R_co]):
    """A step target whose ``send`` carries the task's parameters ``P`` and result type ``R``.

    ``Task[P, R]`` satisfies it: ``wf.execute_task(task, ...)`` and ``wf.start_task`` take
    one, so a type checker checks the arguments against the task's function and types the
    result. Only type checkers read ``send`` here; the engine never calls it.
    """

    def send(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R_co]: ...


class StepHandle(Generic[R_co]):
    """A started child step: what ``wf.start_task`` returns and ``wf.gather`` waits for.

    ``step`` is the step number, ``invocation_id`` the child invocation's id (known before
    the child runs), ``task_name`` its task. A handle belongs to the pass that made it.
    ``StepHandle[R]`` is typed with the task's result type.
    """

    __slots__ = ("_owner", "_target", "invocation_id", "step", "task_name")

    def __init__(self, owner: StepOperations, step: int, invocation_id: str, target: StepTarget) -> None:
        self._owner = owner
        self._target = target
        self.step = step
        self.invocation_id = invocation_id
        self.task_name = target.name

    def __repr__(self) -> str:
        return f"StepHandle(step={self.step}, task={self.task_name!r}, invocation_id={self.invocation_id!r})"


def _seconds(duration: float | dt.timedelta, what: str) -> float:
    seconds = duration.total_seconds() if isinstance(duration, dt.timedelta) else float(duration)
    if seconds < 0 or not math.isfinite(seconds):
        raise MisuseError(f"{what} must be a non-negative, finite number of seconds or a timedelta, got {duration!r}")
    return seconds


def _describe(step: AnyStep) -> str:
    if isinstance(step, StepEntry):
        return f"{step.task}(args digest {step.digest})"
    if isinstance(step, TimerEntry):
        return f"sleep({step.seconds})"
    return f"wait_for_signal({step.name!r}, timeout={step.timeout})"


class StepOperations(PassState):
    """The step operations of ``wf`` (mixed into :class:`~.context.WorkflowContext`)."""

    # -- child tasks ------------------------------------------------------------------
    def start_task(self, task: TypedStepTarget[P, R], *args: P.args, **kwargs: P.kwargs) -> StepHandle[R]:
        """Start ``task`` as the next step and return its handle at once, without waiting.

        The child's message is sent when the pass commits (all children started by one pass
        are dispatched together). Wait for handles with :meth:`gather`; a handle never
        gathered is a fire-and-forget child.

        >>> handles = [wf.start_task(resize, image, size) for size in (64, 256, 1024)]
        >>> thumbnails = [inv.result for inv in wf.gather(*handles)]
        """
        n, recorded = self._next_step()
        json_args, json_kwargs = task.codec.dump_args(args, kwargs)
        requested = digest(json_args, json_kwargs)
        if recorded is None:
            # Only a new step's arguments are sent; a replayed step's were checked when recorded.
            check_size(f"arguments of step {n} ({task.name})", [json_args, json_kwargs], self._max_payload)
            self._cancel_point(done=False)
            self._new_step(n, task, json_args, json_kwargs, requested)
        elif not isinstance(recorded, StepEntry) or recorded.task != task.name or recorded.digest != requested:
            raise self._nondeterminism(f"step {n}", _describe(recorded), f"{task.name}(args digest {requested})")
        else:
            self._cancel_point(done=True)
        handle: StepHandle[R] = StepHandle(self, n, child_invocation_id(self.invocation_id, n), task)
        return handle

    # Typed per position for two and three handles of different tasks (a list, so a union of
    # their invocations); any number of handles of one result type gives list[Invocation[R]].
    @overload
    def gather(
        self, h1: StepHandle[R1], h2: StepHandle[R2], /, *, return_exceptions: Literal[False] = False
    ) -> list[Invocation[R1] | Invocation[R2]]: ...
    @overload
    def gather(
        self,
        h1: StepHandle[R1],
        h2: StepHandle[R2],
        h3: StepHandle[R3],
        /,
        *,
        return_exceptions: Literal[False] = False,
    ) -> list[Invocation[R1] | Invocation[R2] | Invocation[R3]]: ...
    @overload
    def gather(self, *handles: StepHandle[R], return_exceptions: Literal[False] = False) -> list[Invocation[R]]: ...
    @overload
    def gather(self, *handles: StepHandle[R], return_exceptions: bool) -> list[Invocation[R] | TaskError]: ...

    def gather(self, *handles: StepHandle[Any], return_exceptions: bool = False) -> list[Any]:
        """Wait until every handle's child has finished; return their invocations in call order.

        Suspends the workflow while any is unfinished. When a child failed, raises the
        :class:`TaskError` of the first failed handle in call order; the other children's
        results stay available: call ``gather(*handles, return_exceptions=True)`` (in the
        ``except`` block, say) to get every outcome, a ``TaskError`` in place of each failure.
        Gathering resolved handles again never suspends.

        >>> charge, stock = wf.start_task(charge_card, order), wf.start_task(reserve_stock, order)
        >>> payment, reservation = wf.gather(charge, stock)
        """
        self._enter()
        for handle in handles:
            if handle._owner is not self:
                # Fatal like non-determinism: catching it would not make the handle valid.
                self.fatal = MisuseError(f"{handle!r} was made by another pass or workflow; gather this pass's handles")
                raise self.fatal
        pending = [h.step for h in handles if h.step not in self.snapshot.results]
        self._cancel_point(done=not pending)
        if pending:
            raise self._suspend(pending)
        out: list[Any] = []
        for handle in handles:
            try:
                out.append(self._finished(handle))
            except TaskError as exc:
                if not return_exceptions:
                    raise
                out.append(exc)
        return out

    def execute_task(self, task: TypedStepTarget[P, R], *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        """Run ``task`` as the next step and return its finished :class:`Invocation`.

        The first time, this sends the child's message and suspends the workflow; when the
        child's result arrives the workflow replays and this call returns it (or raises
        :class:`TaskError` when the child failed). Same as ``gather(start_task(...))[0]``.
        """
        if not kwargs:
            replayed = self._replayed(task, args)
            if replayed is not None:
                return replayed
        return self.gather(self.start_task(task, *args, **kwargs))[0]

    def _replayed(self, task: StepTarget, args: tuple[Any, ...]) -> Invocation[Any] | None:
        """The common replay, cheaply: the next step is this task's, with plain arguments equal
        to the recorded ones, and it succeeded. None when anything else holds (a new step, a
        failed or unresolved one, other arguments, cancellation under way): the full path
        decides. Replaying a step then costs a microsecond or two, whatever the history."""
        if self.fatal is not None or self.suspending or self._speculative:
            return None  # the full path's _enter() deals with it
        n = self._step + 1
        snapshot = self.snapshot
        recorded = snapshot.steps.get(n)
        outcome = snapshot.results.get(n)
        codec = task.codec
        if (
            outcome is None
            or not outcome.ok
            or self._cancel_at is not None
            or type(recorded) is not StepEntry
            or recorded.task != task.name
            or recorded.kwargs
            or not codec.same_plain_args(args, recorded.args)
        ):
            return None
        self._step = n
        self._ops += 2  # the cancel points of start_task and gather, as the full path counts them
        value = outcome.value
        if not codec.plain_result(value):
            return Invocation.finished(recorded.child, recorded.identity, codec.load_result(value))
        handle = snapshot.handles.get(n)  # an immutable result: one handle serves every replay
        if handle is None:
            handle = snapshot.handles[n] = Invocation.finished(recorded.child, recorded.identity, value)
        return handle

    def execute_tasks(self, calls: list[tuple[Any, ...]]) -> list[Invocation[Any]]:
        """Run several tasks in parallel: ``[(task, *args), ...]`` -> their invocations, in order.

        Every child starts in this pass; the workflow resumes once all have finished. Failures
        are reported as by :meth:`gather`.

        >>> wf.execute_tasks([(charge, order_id), (reserve, order_id, items)])
        """
        return self.gather(*(self.start_task(call[0], *call[1:]) for call in calls))

    def execute_task_with_options(
        self,
        task: TypedStepTarget[..., R],
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        timeout: float | dt.timedelta | None = None,
    ) -> Invocation[R]:
        """:meth:`execute_task` with options that cannot be keyword arguments of the child.

        ``timeout`` (seconds or a timedelta) races the child against a durable timer: when the
        timer fires first, :class:`~dramatiq_encore.errors.StepTimeout` (a ``TimeoutError``) is
        raised, deterministically. The child keeps running; its late result is ignored. The
        timer is a step of its own, right after the child's.
        """
        handle = self.start_task(task, *args, **(kwargs or {}))
        if timeout is None:
            return self.gather(handle)[0]
        seconds = _seconds(timeout, "timeout")
        timer = self._timer_step(seconds)
        first = self._first_resolved(handle.step, timer)
        self._cancel_point(done=first is not None)
        if first is None:
            raise self._suspend([handle.step, timer], wake_any=True)
        if first == timer:
            raise StepTimeout(f"step {handle.step} ({task.name}) did not finish within {seconds} s")
        return self._finished(handle)

    def _first_resolved(self, *steps: int) -> int | None:
        resolved = [n for n in steps if n in self.snapshot.results]
        return min(resolved, key=self.snapshot.order.__getitem__, default=None)

    def _new_step(self, n: int, task: StepTarget, args: list[Any], kwargs: dict[str, Any], args_digest: str) -> None:
        child = child_invocation_id(self.invocation_id, n)
        identity = self.identity.child_workflow(child, task.name) if task.force_new_workflow else self.identity
        entry = StepEntry(
            n=n,
            task=task.name,
            queue=task.queue_name,
            digest=args_digest,
            child=child,
            identity=identity,
            args=args,
            kwargs=kwargs,
            origin=self._origin,
            t=time.time(),  # for operators (the wall clock, not the pass's: no value is drawn)
        )
        self._append(entry)
        self.new_steps.append(entry)

    def _finished(self, handle: StepHandle[R]) -> Invocation[R]:
        step = self.snapshot.steps[handle.step]
        outcome = self.snapshot.results[handle.step]
        assert isinstance(step, StepEntry)
        if outcome.ok:
            return Invocation.finished(step.child, step.identity, handle._target.codec.load_result(outcome.value))
        error = outcome.error
        assert error is not None
        raise TaskError(error.type, error.message, error.traceback, outcome.invocation_id or step.child)

    # -- timers -----------------------------------------------------------------------
    def sleep(self, duration: float | dt.timedelta) -> None:
        """Suspend the workflow for ``duration`` (seconds or a timedelta), durably.

        The timer is a step: its due time (the clock when first reached, plus ``duration``) is
        recorded, so a replay neither restarts nor shortens it, and no worker holds it in
        memory. With Redis (and ``ENCORE_TIMER_POLL`` on, the default) the commit that records
        it also puts it in the store's timer index, which every worker process polls; the
        process that claims it when due sends the wake-up. Otherwise, after the pass commits,
        the runtime sends the invocation a wake-up message delayed by min(remaining, 30 s); a
        worker that receives it before the due time sends it on again with the remaining
        delay. Either way a worker crash loses nothing. When it is due, the wake-up resolves
        the step and the workflow replays past ``sleep``.

        >>> wf.sleep(dt.timedelta(hours=24))  # reminder tomorrow
        """
        n = self._timer_step(_seconds(duration, "sleep duration"))
        done = n in self.snapshot.results
        self._cancel_point(done=done)
        if not done:
            raise self._suspend([n])

    def _timer_step(self, seconds: float) -> int:
        n, recorded = self._next_step()
        if recorded is None:
            now = self._clock().timestamp()
            entry = TimerEntry(n=n, seconds=seconds, due=now + seconds, origin=self._origin, t=now)
            self._append(entry)
            self.new_timers.append(entry)
        elif not isinstance(recorded, TimerEntry) or recorded.seconds != seconds:
            raise self._nondeterminism(f"step {n}", _describe(recorded), f"sleep({seconds})")
        return n

    # -- signals ----------------------------------------------------------------------
    def wait_for_signal(self, name: str, timeout: float | dt.timedelta | None = None) -> Any:
        """Wait for the next signal ``name`` sent with ``app.signal(workflow_id, name, payload)``; its payload.

        Signals are kept in the journal in the order workers record them (two sent at the
        same moment may be recorded in either order); each call consumes the first one of
        that name not consumed yet, so a signal sent before the workflow waits for it is not
        lost, and two signals feed two calls. With ``timeout`` (seconds or a timedelta)
        a durable timer races the signal: :class:`~dramatiq_encore.errors.StepTimeout` (a
        ``TimeoutError``) is raised, deterministically, when the timer wins.

        >>> decision = wf.wait_for_signal("approval", timeout=dt.timedelta(days=2))
        """
        seconds = None if timeout is None else _seconds(timeout, "timeout")
        n, recorded = self._next_step()
        if recorded is None:
            due = None if seconds is None else self._clock().timestamp() + seconds
            entry = WaitEntry(n=n, name=name, timeout=seconds, due=due, origin=self._origin, t=time.time())
            self._append(entry)
            if due is not None:
                self.new_timers.append(entry)
        elif not isinstance(recorded, WaitEntry) or recorded.name != name or recorded.timeout != seconds:
            requested = f"wait_for_signal({name!r}, timeout={seconds})"
            raise self._nondeterminism(f"step {n}", _describe(recorded), requested)
        outcome = self.snapshot.results.get(n)
        self._cancel_point(done=outcome is not None)
        if outcome is None:
            outcome = self._consume(n, name, seconds)
        if outcome.value is None:
            raise StepTimeout(f"no signal {name!r} reached step {n} within {seconds} s")
        return outcome.value["payload"]

    def _consume(self, n: int, name: str, seconds: float | None) -> Outcome:
        """Resolve wait step ``n`` with the next unconsumed signal, or suspend until one comes.

        The pass records the resolution itself (a claim): the commit is refused as stale if
        the step's timer resolved it meanwhile, and the pass runs again.
        """
        signal = self._next_signal(name)
        if signal is None:
            raise self._suspend([] if seconds is None else [n], [name], wake_any=seconds is not None)
        outcome = Outcome(ok=True, value={"id": signal.id, "payload": signal.payload})
        self._append(ResolvedEntry(n=n, o=outcome, t=time.time()))
        self.claims.append(n)
        self.consumed.add(signal.id)
        return outcome
