"""Logging: which workflow each record is about, and ``wf.logger`` for workflow code.

**The library's records.** While a worker handles a message, the runtime keeps the
invocation it is about in a context variable (:func:`enter`, :func:`identify`). Every record
of a ``dramatiq_encore.*`` logger then carries two attributes, ``workflow_id`` and
``invocation_id`` (None when not known: a message that could not be read, a thread of
its own), which a JSON formatter emits like any ``extra`` field, and ``%(workflow_id)s``
can be used in a format string of a handler that only receives the library's records.

They are set by a log record factory (:func:`logging.setLogRecordFactory`, chained to the
one installed before), not by a filter: a filter on the ``dramatiq_encore`` logger would not
see the records of its child loggers, and the handlers are the application's. The factory
only touches the library's own records. An application that replaces the record factory
later without chaining it, or that wants the ids on *every* record (its own, dramatiq's) of
the thread handling a message, adds :class:`ContextFilter` to its handlers instead.

**Workflow code.** ``task.wf.logger`` is a logger (``dramatiq_encore.workflow.<task>``) that
is silent while the pass replays what earlier passes recorded: a line is emitted once per
real execution of the code that logs it, not once per pass. Its records carry the ids too.
A speculative first pass (see :mod:`dramatiq_encore.actors.fast`) holds its records until
its speculation holds (:func:`speculating`); an abandoned one drops them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..actors.context import WorkflowContext

LIBRARY = "dramatiq_encore"
#: The loggers of ``wf.logger``: ``dramatiq_encore.workflow.<task name>``.
WORKFLOW = f"{LIBRARY}.workflow"
FIELDS = ("workflow_id", "invocation_id")


class Scope:
    """The invocation a thread is handling a message for (mutable: known piece by piece)."""

    __slots__ = ("invocation_id", "workflow_id")

    def __init__(self) -> None:
        self.invocation_id: str | None = None
        self.workflow_id: str | None = None


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("encore_log_scope", default=None)


def enter() -> contextvars.Token[Scope | None]:
    """A message is being handled in this context (ids still unknown); :func:`leave` after."""
    return _scope.set(Scope())


def leave(token: contextvars.Token[Scope | None]) -> None:
    _scope.reset(token)


def identify(invocation_id: str | None, workflow_id: str | None = None) -> None:
    """The message handled in this context is about ``invocation_id`` (of ``workflow_id``)."""
    scope = _scope.get()
    if scope is None:
        return
    if invocation_id is not None and invocation_id != scope.invocation_id:
        scope.invocation_id, scope.workflow_id = invocation_id, workflow_id
    elif workflow_id is not None:
        scope.workflow_id = workflow_id


@contextlib.contextmanager
def about(invocation_id: str | None, workflow_id: str | None = None) -> Iterator[None]:
    """The library's records logged in the block name ``invocation_id``: for a thread of its
    own that works for an invocation (the lease keeper's renewals, say)."""
    token = enter()
    identify(invocation_id, workflow_id)
    try:
        yield
    finally:
        leave(token)


def current() -> tuple[str | None, str | None]:
    """(workflow_id, invocation_id) of the message handled in this context."""
    scope = _scope.get()
    return (None, None) if scope is None else (scope.workflow_id, scope.invocation_id)


def _ours(name: object) -> bool:
    """A logger of the library (``wf.logger``'s set their ids themselves)."""
    if not isinstance(name, str):
        return False
    return (name == LIBRARY or name.startswith(LIBRARY + ".")) and not name.startswith(WORKFLOW + ".")


def install() -> None:
    """Chain this module's record factory to the current one (once; done at import)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "encore", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _ours(record.name):
            scope = _scope.get()
            record.workflow_id = None if scope is None else scope.workflow_id
            record.invocation_id = None if scope is None else scope.invocation_id
        return record

    factory.encore = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class ContextFilter(logging.Filter):
    """For a handler: gives every record it emits ``workflow_id`` and ``invocation_id``
    (those of the message the emitting thread handles, else None), unless it has them."""

    def filter(self, record: logging.LogRecord) -> bool:
        workflow_id, invocation_id = current()
        if not hasattr(record, "workflow_id"):
            record.workflow_id = workflow_id
        if not hasattr(record, "invocation_id"):
            record.invocation_id = invocation_id
        return True


# -- speculative passes ------------------------------------------------------------------
class Speculation:
    """Holds the records of a pass run before its lease was granted, until it is decided."""

    def __init__(self) -> None:
        self.open = True
        self._held: list[tuple[logging.Logger, logging.LogRecord]] = []

    def hold(self, logger: logging.Logger, record: logging.LogRecord) -> bool:
        """Keep ``record`` for later; False once decided (the record goes out now)."""
        if not self.open:
            return False
        self._held.append((logger, record))
        return True

    def release(self) -> None:
        """The speculation held: emit what the pass logged so far, in order."""
        self.open = False
        held, self._held = self._held, []
        for logger, record in held:
            logger.handle(record)

    def discard(self) -> None:
        """The pass is abandoned: nothing it logged happened."""
        self.open = False
        self._held = []


_speculation: contextvars.ContextVar[Speculation | None] = contextvars.ContextVar("encore_speculation", default=None)


@contextlib.contextmanager
def speculating() -> Iterator[Speculation]:
    """Around a speculative pass (started in the block: its greenlet copies this context).
    Undecided at the end of the block, its records are dropped."""
    speculation = Speculation()
    token = _speculation.set(speculation)
    try:
        yield speculation
    finally:
        _speculation.reset(token)
        speculation.discard()


# -- wf.logger ---------------------------------------------------------------------------
class WorkflowLogger(logging.LoggerAdapter[logging.Logger]):
    """``wf.logger``: emits a record only when the pass is past its recorded history."""

    def __init__(self, ctx: WorkflowContext, task: str) -> None:
        super().__init__(logging.getLogger(f"{WORKFLOW}.{task}"), {})
        self._ctx = ctx

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level) or self._ctx.replaying:
            return
        record = self._record(level, msg, args, kwargs)
        speculation = _speculation.get()
        if speculation is not None and speculation.hold(self.logger, record):
            return
        self.logger.handle(record)

    def _record(self, level: int, msg: object, args: tuple[object, ...], kwargs: dict[str, Any]) -> logging.LogRecord:
        """The record ``Logger.log`` would make here (the caller's file and line, the ids)."""
        exc_info = kwargs.get("exc_info")
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        elif exc_info and not isinstance(exc_info, tuple):
            exc_info = sys.exc_info()
        # Frames above findCaller: _record, log, then the caller (logging's own are skipped).
        stacklevel = 2 + int(kwargs.get("stacklevel", 1))
        fn, lno, func, sinfo = self.logger.findCaller(bool(kwargs.get("stack_info", False)), stacklevel)
        extra: Mapping[str, object] | None = kwargs.get("extra")
        record = self.logger.makeRecord(
            self.logger.name, level, fn, lno, msg, args, exc_info or None, func, extra, sinfo
        )
        if not hasattr(record, "workflow_id"):
            record.workflow_id = self._ctx.identity.workflow_id
        if not hasattr(record, "invocation_id"):
            record.invocation_id = self._ctx.invocation_id
        return record


install()
