"""The ``wf`` operations of a running invocation, found through a context variable.

``task.wf`` resolves to the context of the invocation running in the current thread,
whatever task object it is reached through. Every operation returns on replay exactly what
it returned the first time: recorded values come from the snapshot's journal, new ones are
appended to this pass's entries and committed atomically with the pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ..errors import EncoreError
from ..observe.logs import WorkflowLogger
from ..state.models import ValueEntry
from .codec import to_json_value
from .pass_state import CANCEL_STREAM, DEFAULT_MAX_PAYLOAD, ContinueAsNew, Suspend
from .steps import StepHandle, StepOperations, StepTarget

if TYPE_CHECKING:
    from .replay import Snapshot

__all__ = ["StepHandle", "StepTarget", "Suspend", "WorkflowContext", "current_context"]

T = TypeVar("T")
PATCH_STREAM = "patch"
#: Streams a replay does not read in order (by name, or once at the start of a pass).
_UNORDERED = (PATCH_STREAM, CANCEL_STREAM)

_current: ContextVar[WorkflowContext | None] = ContextVar("dramatiq_encore_workflow", default=None)


def current_context() -> WorkflowContext:
    """The running invocation's context; a clear error outside one."""
    ctx = _current.get()
    if ctx is None:
        raise EncoreError(
            "no workflow is running in this thread: task.wf and task.workflow are only available "
            "inside a task executed by an Encore worker (start it with task.send(...))"
        )
    return ctx


def _derive(seed: str, kind: str, index: int) -> bytes:
    return hashlib.sha256(f"{seed}\x00{kind}\x00{index}".encode()).digest()


class _Deterministic:
    """``wf.deterministic``: the seed API's spelling of custom operations."""

    def __init__(self, ctx: WorkflowContext) -> None:
        self._ctx = ctx

    def _deterministic_operation(self, name: str, fn: Callable[[], T]) -> T:
        return self._ctx.side_effect(name, fn)


class WorkflowContext(StepOperations):
    """The ``wf`` operations of one pass over one invocation.

    Deterministic values and workflow data live here; steps (child tasks, parallel steps,
    timers, signals) in :class:`~.steps.StepOperations`.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        clock: Callable[[], dt.datetime],
        origin: str,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        data: Mapping[str, str | None] | None = None,
        speculative: bool = False,
    ) -> None:
        super().__init__(
            snapshot, clock=clock, origin=origin, max_payload=max_payload, data=data, speculative=speculative
        )
        self._last_now: dt.datetime | None = None
        self._patches: set[str] = set()
        self.deterministic = _Deterministic(self)
        self._logger: WorkflowLogger | None = None
        self._history_end: int | None = None

    # -- logging --------------------------------------------------------------------------
    @property
    def logger(self) -> WorkflowLogger:
        """A logger (``dramatiq_encore.workflow.<task>``) that is silent while the pass replays
        what earlier passes recorded: each line is logged once per real execution, not once
        per pass. Its records carry ``workflow_id`` and ``invocation_id``.

        >>> wf.logger.info("charged %s", payment.result["id"])
        """
        if self._logger is None:
            self._logger = WorkflowLogger(self, self.snapshot.meta.record.task)
        return self._logger

    @property
    def replaying(self) -> bool:
        """True while the pass is inside its recorded history: an earlier pass recorded a later
        step, or values this pass has not drawn again yet. Once the pass records something
        new, it is past its history."""
        if self.entries:
            return False
        if self._history_end is None:
            self._history_end = max(self.snapshot.steps, default=self._first_step)
        if self._step < self._history_end:
            return True
        counters = self._counters
        return any(
            counters.get(kind, 0) < len(recorded)
            for kind, recorded in self.snapshot.values.items()
            if kind not in _UNORDERED
        )

    # -- deterministic values -----------------------------------------------------------
    def random(self) -> float:
        """A float in [0, 1), the same on every replay."""
        seed = self.snapshot.meta.record.seed
        return float(
            self._value("random", lambda i: (int.from_bytes(_derive(seed, "random", i)[:8], "big") >> 11) / 2**53)
        )

    def uuid(self) -> str:
        """RFC 4122 version-4 text, the same on every replay."""
        seed = self.snapshot.meta.record.seed
        return str(self._value("uuid", lambda i: str(uuid.UUID(bytes=_derive(seed, "uuid", i)[:16], version=4))))

    def utc_now(self) -> dt.datetime:
        """The real UTC clock the first time, the recorded value on replay; strictly increasing."""

        def produce(_: int) -> str:
            now = self._clock()
            last = self._last_recorded_now()
            if last is not None and now <= last:
                now = last + dt.timedelta(microseconds=1)
            return now.isoformat()

        value = dt.datetime.fromisoformat(self._value("utc_now", produce))
        self._last_now = value
        return value

    def _last_recorded_now(self) -> dt.datetime | None:
        if self._last_now is not None:
            return self._last_now
        recorded = self.snapshot.values.get("utc_now")
        return dt.datetime.fromisoformat(recorded[-1].v) if recorded else None

    def side_effect(self, name: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` once and record its JSON value; replays return the recorded value.

        Each name is its own stream, so adding an operation does not shift the others.
        """
        result: T = self._value(f"op:{name}", lambda _: to_json_value(fn(), f"side effect {name!r}"), name=name)
        return result

    # -- workflow data ------------------------------------------------------------------
    def set_data(self, key: str, value: Any) -> None:
        """Store ``key`` in the workflow's data, once: a replay does not write it again."""
        encoded = json.dumps(to_json_value(value, f"workflow data {key!r}"))

        def produce(_: int) -> str:
            self.data_writes[key] = encoded
            return encoded  # recorded, so that a fork can rebuild the data of the steps it keeps

        self._value("set_data", produce, name=key)

    def get_data(self, key: str, default: Any = None) -> Any:
        """Read ``key`` from the workflow's data; a replay returns what the first run read."""

        def produce(_: int) -> list[Any]:
            if key in self.data_writes:
                return [True, json.loads(self.data_writes[key])]
            found, text = self._read_data(key)
            return [found, json.loads(text) if found and text is not None else None]

        found, value = self._value("get_data", produce, name=key)
        return value if found else default

    # -- versioning -------------------------------------------------------------------
    def patched(self, change_id: str) -> bool:
        """Whether this run takes the new code path of change ``change_id``.

        True in a run that reaches this point with the new code (the choice is recorded, so
        its replays say True too); False when replaying a history that the old code already
        took past this point (it recorded later steps), so the old path keeps matching it.

        >>> if wf.patched("send-receipt"):
        ...     wf.execute_task(send_receipt, order_id)   # new code
        ... else:
        ...     wf.execute_task(send_email, order_id)     # what running workflows did
        """
        self._enter()
        if change_id in self._patches or any(e.name == change_id for e in self.snapshot.values.get(PATCH_STREAM, ())):
            return True
        if self.snapshot.steps and max(self.snapshot.steps) > self._step:
            return False
        self._patches.add(change_id)
        self._append(ValueEntry(k=PATCH_STREAM, v=True, name=change_id))
        return True

    def continue_as_new(self, *args: Any, **kwargs: Any) -> NoReturn:
        """End this run and start the workflow again from the top with these arguments.

        Keeps a long-lived workflow's history bounded: the invocation (same id, same handle,
        same workflow data) starts a fresh journal, with fresh deterministic streams, and
        step numbers that go on from this run's. Signals not consumed yet are carried over;
        children still running are not waited for. Nothing after this call runs.

        >>> def poll_inbox(cursor: int) -> None:
        ...     for _ in range(100):
        ...         cursor = wf.execute_task(fetch_page, cursor).result
        ...     wf.continue_as_new(cursor)
        """
        self._enter()
        self._cancel_point(done=False)
        self.continued = (args, kwargs)
        self.suspending = True
        raise ContinueAsNew()
