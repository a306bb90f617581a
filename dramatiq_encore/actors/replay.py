"""The pure replay engine: snapshot + function + arguments in, outcome out.

No broker, no state store: ``run_pass`` executes the workflow function once under a
:class:`WorkflowContext` built from a :class:`Snapshot` and reports what happened. The
runtime decides what to write and send. Unit tests drive it directly, in microseconds.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from typing import Any, Literal

from ..errors import EncoreError, MisuseError, TaskError
from ..state.models import ErrorInfo, InvocationMeta, Outcome, ResolvedEntry, StepEntry, ValueEntry, journal_entry
from .context import Suspend, WorkflowContext, _current


class Snapshot:
    """An invocation's metadata folded with its journal, extended incrementally."""

    def __init__(self, meta: InvocationMeta) -> None:
        self.meta = meta
        self.length = 0
        self.values: dict[str, list[ValueEntry]] = {}
        self.steps: dict[int, StepEntry] = {}
        self.results: dict[int, Outcome] = {}

    def apply(self, raw_entries: list[str]) -> None:
        """Fold journal entries (JSON text) that follow the ones already applied."""
        for text in raw_entries:
            entry = journal_entry.validate_json(text)
            if isinstance(entry, ValueEntry):
                self.values.setdefault(entry.k, []).append(entry)
            elif isinstance(entry, StepEntry):
                self.steps[entry.n] = entry
            elif isinstance(entry, ResolvedEntry):
                self.results.setdefault(entry.n, entry.o)
        self.length += len(raw_entries)

    def pending_steps(self) -> list[StepEntry]:
        return [step for n, step in sorted(self.steps.items()) if n not in self.results]


@dataclasses.dataclass
class PassOutcome:
    """What one pass produced. ``status`` is succeeded, failed or suspended."""

    status: Literal["succeeded", "failed", "suspended"]
    context: WorkflowContext
    value: Any = None
    error: ErrorInfo | None = None
    exception: BaseException | None = None
    retryable: bool = False

    @property
    def finished(self) -> bool:
        return self.status != "suspended"


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
    exception is a user failure that dramatiq's retry policy may retry.
    """
    token = _current.set(ctx)
    try:
        value = fn(*args, **kwargs)
    except Suspend:
        if ctx.fatal is not None:
            return _failed(ctx, ctx.fatal)
        return PassOutcome("suspended", ctx)
    except Exception as exc:  # user code failed: classify below
        return _classify(ctx, exc)
    finally:
        _current.reset(token)
    if ctx.fatal is not None:
        return _failed(ctx, ctx.fatal)
    if ctx.suspending:
        return _failed(ctx, _swallowed(ctx))
    return PassOutcome("succeeded", ctx, value=value)


def _classify(ctx: WorkflowContext, exc: Exception) -> PassOutcome:
    if ctx.fatal is not None:
        return _failed(ctx, ctx.fatal)
    if ctx.suspending:
        return _failed(ctx, _swallowed(ctx))
    if isinstance(exc, EncoreError):
        return _failed(ctx, exc)
    return PassOutcome("failed", ctx, error=error_info(exc), exception=exc, retryable=True)


def _failed(ctx: WorkflowContext, exc: BaseException) -> PassOutcome:
    return PassOutcome("failed", ctx, error=error_info(exc), exception=exc, retryable=False)


def _swallowed(ctx: WorkflowContext) -> MisuseError:
    return MisuseError(
        f"invocation {ctx.invocation_id!r} of workflow {ctx.identity.workflow_id!r} caught the engine's "
        f"suspension while waiting for step(s) {ctx.waiting}: do not catch BaseException (or use a bare "
        "'except:') around wf.* calls; catch Exception instead"
    )
