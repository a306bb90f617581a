"""The pure replay engine: snapshot + function + arguments in, outcome out.

No broker, no state store: ``run_pass`` executes the workflow function once under a
:class:`WorkflowContext` built from a :class:`Snapshot` and reports what happened. The
runtime decides what to write and send. Unit tests drive it directly, in microseconds.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Literal

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
        # Results that reached the journal before their step did (a child's start is sent
        # ahead of its parent's commit): they count once the step is recorded.
        self._early: dict[int, tuple[int, ResolvedEntry]] = {}

    def apply(self, raw_entries: list[str] | tuple[str, ...]) -> None:
        """Fold journal entries (JSON text) that follow the ones already applied."""
        self._fold([journal_entry.validate_json(text) for text in raw_entries])

    def extend(self, raw_entries: list[str] | tuple[str, ...]) -> bool:
        """Fold entries that arrived from outside (results, signals, a cancel) and return True;
        return False, folding nothing, when another pass wrote some of them (steps, values)."""
        entries = [journal_entry.validate_json(text) for text in raw_entries]
        if not all(isinstance(entry, ResolvedEntry | SignalEntry | CancelEntry) for entry in entries):
            return False
        self._fold(entries)
        return True

    def extend_own(self, entries: Sequence[JournalEntry]) -> None:
        """Fold the entries a pass over this snapshot appended, right after what it held."""
        self._fold(entries)

    def _fold(self, entries: Sequence[JournalEntry]) -> None:
        for index, entry in enumerate(entries, start=self.length):
            if isinstance(entry, ValueEntry):
                self.values.setdefault(entry.k, []).append(entry)
            elif isinstance(entry, StepEntry | TimerEntry | WaitEntry):
                self.steps[entry.n] = entry
                if entry.n in self._early:
                    self._resolve(*self._early.pop(entry.n))
            elif isinstance(entry, ResolvedEntry):
                if entry.n in self.steps:
                    self._resolve(index, entry)
                else:
                    self._early.setdefault(entry.n, (index, entry))
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


@dataclasses.dataclass
class PassOutcome:
    """What one pass produced: succeeded, failed, cancelled, suspended or continued (as new)."""

    status: Literal["succeeded", "failed", "cancelled", "suspended", "continued", "abandoned"]
    context: WorkflowContext
    value: Any = None
    error: ErrorInfo | None = None
    exception: BaseException | None = None
    retryable: bool = False

    @property
    def continued(self) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """The next run's arguments when the workflow continued as new."""
        return self.context.continued

    @property
    def finished(self) -> bool:
        return self.status not in ("suspended", "continued", "abandoned")


def error_info(exc: BaseException) -> ErrorInfo:
    """A user error as text; a TaskError keeps the remote error it carries."""
    if isinstance(exc, TaskError):
        return ErrorInfo(type=exc.error_type, message=exc.message, traceback=exc.traceback)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ErrorInfo(type=getattr(exc, "error_type", type(exc).__name__), message=str(exc), traceback=text)


def run_pass(ctx: WorkflowContext, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> PassOutcome:
    """Execute ``fn`` once under ``ctx``; never raises for what user code does.

    Non-determinism and misuse fail the invocation even when user code catches them; a
    ``TaskError`` from a child fails it too (a replay would raise it again); any other
    exception is a user failure that dramatiq's retry policy may retry. Once cancellation
    was raised in the workflow, it ends ``cancelled`` however the function ends (its cleanup
    may catch ``WorkflowCancelled``, or ``Exception``, and return).
    """
    token = _current.set(ctx)
    try:
        value = fn(*args, **kwargs)
    except Suspend:
        if ctx.abandoned:
            return PassOutcome("abandoned", ctx)
        if ctx.fatal is not None:
            return _failed(ctx, ctx.fatal)
        return PassOutcome("continued" if ctx.continued is not None else "suspended", ctx)
    except Exception as exc:  # user code failed: classify below
        return _classify(ctx, exc)
    finally:
        _current.reset(token)
    if ctx.abandoned:
        return PassOutcome("abandoned", ctx)
    if ctx.fatal is not None:
        return _failed(ctx, ctx.fatal)
    if ctx.suspending:
        return _failed(ctx, _swallowed(ctx))
    if ctx.cancelled_here:
        return _cancelled(ctx, ctx._cancelled())
    return PassOutcome("succeeded", ctx, value=value)


def _classify(ctx: WorkflowContext, exc: Exception) -> PassOutcome:
    if ctx.abandoned:
        return PassOutcome("abandoned", ctx)
    if ctx.fatal is not None:
        return _failed(ctx, ctx.fatal)
    if ctx.suspending:
        return _failed(ctx, _swallowed(ctx))
    if ctx.cancelled_here:
        return _cancelled(ctx, exc if isinstance(exc, WorkflowCancelled) else ctx._cancelled())
    if isinstance(exc, EncoreError):
        return _failed(ctx, exc)
    return PassOutcome("failed", ctx, error=error_info(exc), exception=exc, retryable=True)


def _cancelled(ctx: WorkflowContext, exc: WorkflowCancelled) -> PassOutcome:
    return PassOutcome("cancelled", ctx, error=error_info(exc), exception=exc)


def _failed(ctx: WorkflowContext, exc: BaseException) -> PassOutcome:
    return PassOutcome("failed", ctx, error=error_info(exc), exception=exc, retryable=False)


def _swallowed(ctx: WorkflowContext) -> MisuseError:
    return MisuseError(
        f"invocation {ctx.invocation_id!r} of workflow {ctx.identity.workflow_id!r} caught the engine's "
        f"suspension while waiting for step(s) {ctx.waiting}: do not catch BaseException (or use a bare "
        "'except:') around wf.* calls; catch Exception instead"
    )
