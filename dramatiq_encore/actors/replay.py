"""The pure replay engine: snapshot + function + arguments in, outcome out.

No broker, no state store: ``run_pass`` (or a :class:`Pass`, which can ask for what it
needs) executes the workflow function once under a :class:`WorkflowContext` built from a
:class:`Snapshot` and returns a :class:`PassOutcome`, a plain value that says what the pass
decided. The runtime builds the commit from it and decides what to send. Unit tests drive
it directly, in microseconds. Neither this module nor anything it imports touches dramatiq,
pika, redis, the runtime or a state backend (``tests/unit/test_engine_purity.py``).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import inspect
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import greenlet

from ..errors import EncoreError, MisuseError, TaskError, WorkflowCancelled
from ..state.models import (
    AnyStep,
    CancelEntry,
    ErrorInfo,
    InvocationMeta,
    JournalEntry,
    Outcome,
    ResolvedEntry,
    SignalEntry,
    StepEntry,
    TimerEntry,
    ValueEntry,
    WaitEntry,
    journal_entry,
)
from .context import Suspend, WorkflowContext, _current
from .coroutines import await_in_pass
from .pass_state import DEFAULT_MAX_PAYLOAD, Abandoned, JournalOut, Needs


class Snapshot:
    """An invocation's metadata folded with its journal, extended incrementally.

    ``steps`` maps step numbers to what was recorded there (a child task, a timer, a wait
    for a signal); ``results`` to their first resolution and ``order`` to that resolution's
    position in the journal (races are decided by it). ``signals`` lists the signals received,
    in order, and ``consumed`` the ids that wait steps took.
    """

    def __init__(self, meta: InvocationMeta) -> None:
        self.meta = meta
        self.length = 0
        self.values: dict[str, list[ValueEntry]] = {}
        self.steps: dict[int, AnyStep] = {}
        self.results: dict[int, Outcome] = {}
        self.order: dict[int, int] = {}
        self.signals: list[SignalEntry] = []
        self.consumed: set[str] = set()
        self.cancel: CancelEntry | None = None
        #: Handles of replayed steps with an immutable result, made once (see ``_replayed``).
        self.handles: dict[int, Any] = {}

    def apply(self, raw_entries: list[str] | tuple[str, ...]) -> None:
        """Fold journal entries (JSON text) that follow the ones already applied."""
        self._fold([journal_entry.validate_json(text) for text in raw_entries])

    def extend_own(self, entries: Sequence[JournalEntry]) -> None:
        """Fold the entries a pass over this snapshot appended, right after what it held."""
        self._fold(entries)

    def _fold(self, entries: Sequence[JournalEntry]) -> None:
        for index, entry in enumerate(entries, start=self.length):
            if isinstance(entry, ValueEntry):
                self.values.setdefault(entry.k, []).append(entry)
            elif isinstance(entry, StepEntry | TimerEntry | WaitEntry):
                self.steps[entry.n] = entry
            elif isinstance(entry, ResolvedEntry):  # always after its step (the store checks it)
                self._resolve(index, entry)
            elif isinstance(entry, SignalEntry):
                self.signals.append(entry)
            elif self.cancel is None:
                self.cancel = entry
        self.length += len(entries)

    def _resolve(self, index: int, entry: ResolvedEntry) -> None:
        if entry.n in self.results:
            return
        self.results[entry.n] = entry.o
        self.order[entry.n] = index
        if isinstance(self.steps.get(entry.n), WaitEntry) and isinstance(entry.o.value, dict):
            self.consumed.add(str(entry.o.value.get("id")))

    def pending_steps(self) -> list[StepEntry]:
        """Child-task steps not resolved yet, in step order."""
        return [s for n, s in sorted(self.steps.items()) if n not in self.results and isinstance(s, StepEntry)]

    def pending_timers(self) -> list[TimerEntry | WaitEntry]:
        """Timer steps (sleeps and timeouts of signal waits) not resolved yet, in step order."""
        return [
            s
            for n, s in sorted(self.steps.items())
            if n not in self.results and (isinstance(s, TimerEntry) or (isinstance(s, WaitEntry) and s.due is not None))
        ]


Status = Literal["succeeded", "failed", "cancelled", "suspended", "continued", "stopped"]


@dataclasses.dataclass
class PassOutcome:
    """What one pass decided, as plain data: how it ended and what it recorded.

    ``status`` is succeeded, failed or cancelled (finished), suspended (it waits on
    ``waiting`` steps and ``waiting_signals``), continued (as new, with ``continued`` as the
    next run's arguments) or stopped (it needs ``needs`` from the store first, and runs again
    once it has it: nothing it did counts). ``entries`` are the journal entries to append,
    ``new_steps`` the children to start, ``new_timers`` the wake-ups to send, ``data_writes``
    the workflow data to write; ``claims`` are the wait steps the pass resolved itself.
    """

    status: Status
    value: Any = None
    error: ErrorInfo | None = None
    exception: BaseException | None = None
    retryable: bool = False
    entries: list[JournalOut] = dataclasses.field(default_factory=list)
    new_steps: list[StepEntry] = dataclasses.field(default_factory=list)
    new_timers: list[TimerEntry | WaitEntry] = dataclasses.field(default_factory=list)
    data_writes: dict[str, str] = dataclasses.field(default_factory=dict)
    waiting: list[int] = dataclasses.field(default_factory=list)
    waiting_signals: list[str] = dataclasses.field(default_factory=list)
    wake_any: bool = False
    claims: list[int] = dataclasses.field(default_factory=list)
    #: Cancellation was raised in this pass: its children still running are cancelled too.
    cancel_raised: bool = False
    #: Signals received that no step consumed (a new run, after continue-as-new, keeps them).
    unconsumed: list[SignalEntry] = dataclasses.field(default_factory=list)
    continued: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    last_step: int = 0
    needs: Needs | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


def error_info(exc: BaseException) -> ErrorInfo:
    """A user error as text; a TaskError keeps the remote error it carries."""
    if isinstance(exc, TaskError):
        return ErrorInfo(type=exc.error_type, message=exc.message, traceback=exc.traceback)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ErrorInfo(type=getattr(exc, "error_type", type(exc).__name__), message=str(exc), traceback=text)


def run_pass(
    snapshot: Snapshot,
    fn: Callable[..., Any],
    args: list[Any] | tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    clock: Callable[[], dt.datetime],
    origin: str,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    data: Mapping[str, str | None] | None = None,
    speculative: bool = False,
) -> PassOutcome:
    """Execute ``fn`` once over ``snapshot``; never raises for what user code does.

    ``origin`` is the key of the trigger that woke the invocation (repairs use it),
    ``data`` the workflow data values already read, ``speculative`` a pass run before the
    lease is held. With no driver to ask (see :class:`Pass`), a pass that needs anything
    else from the store (another data value, the lease) stops: status ``stopped``.
    Non-determinism and misuse fail the invocation even when user code catches them; a
    ``TaskError`` from a child fails it too (a replay would raise it again); any other
    exception is a user failure that dramatiq's retry policy may retry. Once cancellation
    was raised in the workflow, it ends ``cancelled`` however the function ends (its cleanup
    may catch ``WorkflowCancelled``, or ``Exception``, and return).
    """
    ctx = WorkflowContext(
        snapshot, clock=clock, origin=origin, max_payload=max_payload, data=data, speculative=speculative
    )
    return _execute(ctx, fn, args, kwargs)


class Pass:
    """One pass that asks its driver for what it needs and goes on with the answer.

    The pass runs in a greenlet of the driver's thread (dramatiq's worker thread: its
    thread-locals, time limits and context variables hold in user code). When the pass
    needs something from the state store, it parks and :meth:`start` or :meth:`answer`
    returns that :class:`Needs`; the driver fetches it (no store I/O happens while user code
    runs) and answers: ``Needs(lease=True)`` with ``True`` once the lease is held on the
    empty state the speculative pass assumed, ``Needs(data=key)`` with ``(found, text)``.
    A driver that cannot grant the lease :meth:`abandon` s the pass.

    >>> step = Pass(snapshot, fn, args, kwargs, clock=clock, origin="start", speculative=True)
    >>> result = step.start()
    >>> while isinstance(result, Needs):
    ...     result = step.answer(fetch(result))
    """

    def __init__(
        self,
        snapshot: Snapshot,
        fn: Callable[..., Any],
        args: list[Any] | tuple[Any, ...],
        kwargs: dict[str, Any],
        **options: Any,
    ) -> None:
        self.snapshot = snapshot
        self._ctx = WorkflowContext(snapshot, **options)
        #: The pass's ``wf`` context (observers time it: see :mod:`.passes`).
        self.context = self._ctx
        self._ctx.ask = self._ask
        self._greenlet = greenlet.greenlet(lambda: _execute(self._ctx, fn, args, kwargs))
        # User code sees the driver's context variables (dramatiq's current message, say).
        self._greenlet.gr_context = contextvars.copy_context()

    def _ask(self, needs: Needs) -> Any:
        # In the pass's greenlet: park, and hand ``needs`` to whoever started or answered it.
        parent = self._greenlet.parent
        assert parent is not None
        return parent.switch(needs)

    def start(self) -> PassOutcome | Needs:
        return self._switch()

    def answer(self, value: Any) -> PassOutcome | Needs:
        return self._switch(value)

    def _switch(self, *value: Any) -> PassOutcome | Needs:
        self._greenlet.parent = greenlet.getcurrent()
        result: PassOutcome | Needs = self._greenlet.switch(*value)
        return result

    @property
    def parked(self) -> bool:
        """Started and waiting for an answer."""
        return bool(self._greenlet) and not self._greenlet.dead

    def abandon(self) -> None:
        """Unwind a parked pass: it raises :class:`Abandoned` where it waits; nothing counts."""
        if self.parked:
            self._ctx.suspending = True
            self._greenlet.parent = greenlet.getcurrent()
            self._greenlet.throw(Abandoned())


def _execute(ctx: WorkflowContext, fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> PassOutcome:
    token = _current.set(ctx)
    try:
        value = fn(*args, **kwargs)
        if inspect.iscoroutine(value):  # an async task: awaited on the event loop (see .coroutines)
            value = await_in_pass(ctx, value)
    except Abandoned:
        return _outcome("stopped", ctx)
    except Suspend:
        if ctx.needs is not None:
            return _outcome("stopped", ctx)
        if ctx.fatal is not None:
            return _failed(ctx, ctx.fatal)
        return _outcome("continued" if ctx.continued is not None else "suspended", ctx)
    except Exception as exc:  # user code failed: classify below
        return _classify(ctx, exc)
    finally:
        _current.reset(token)
    return _returned(ctx, value)


def _returned(ctx: WorkflowContext, value: Any) -> PassOutcome:
    if ctx.needs is not None:  # user code swallowed the stop: it runs again with what it needs
        return _outcome("stopped", ctx)
    if ctx.fatal is not None:
        return _failed(ctx, ctx.fatal)
    if ctx.suspending:
        return _failed(ctx, _swallowed(ctx))
    if ctx.cancelled_here:
        return _cancelled(ctx, ctx._cancelled())
    return _outcome("succeeded", ctx, value=value)


def _outcome(status: Status, ctx: WorkflowContext, **fields: Any) -> PassOutcome:
    return PassOutcome(
        status,
        entries=ctx.entries,
        new_steps=ctx.new_steps,
        new_timers=ctx.new_timers,
        data_writes=ctx.data_writes,
        waiting=ctx.waiting,
        waiting_signals=ctx.waiting_signals,
        wake_any=ctx.wake_any,
        claims=ctx.claims,
        cancel_raised=ctx.cancel_raised,
        unconsumed=ctx.unconsumed_signals() if status == "continued" else [],
        continued=ctx.continued,
        last_step=ctx.last_step,
        needs=ctx.needs,
        **fields,
    )


def _classify(ctx: WorkflowContext, exc: Exception) -> PassOutcome:
    if ctx.needs is not None:
        return _outcome("stopped", ctx)
    if ctx.fatal is not None:
        return _failed(ctx, ctx.fatal)
    if ctx.suspending:
        return _failed(ctx, _swallowed(ctx))
    if ctx.cancelled_here:
        return _cancelled(ctx, exc if isinstance(exc, WorkflowCancelled) else ctx._cancelled())
    if isinstance(exc, EncoreError):
        return _failed(ctx, exc)
    return _outcome("failed", ctx, error=error_info(exc), exception=exc, retryable=True)


def _cancelled(ctx: WorkflowContext, exc: WorkflowCancelled) -> PassOutcome:
    return _outcome("cancelled", ctx, error=error_info(exc), exception=exc)


def _failed(ctx: WorkflowContext, exc: BaseException) -> PassOutcome:
    return _outcome("failed", ctx, error=error_info(exc), exception=exc, retryable=False)


def _swallowed(ctx: WorkflowContext) -> MisuseError:
    return MisuseError(
        f"invocation {ctx.invocation_id!r} of workflow {ctx.identity.workflow_id!r} caught the engine's "
        f"suspension while waiting for step(s) {ctx.waiting}: do not catch BaseException (or use a bare "
        "'except:') around wf.* calls; catch Exception instead"
    )
