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
from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import EncoreError, NonDeterminismError, TaskError
from ..identity import WorkflowIdentity, child_invocation_id
from ..state.models import Outcome, StepEntry, ValueEntry
from .codec import TaskCodec, check_size, digest, to_json_value

if TYPE_CHECKING:
    from ..invocation import Invocation
    from .replay import Snapshot

T = TypeVar("T")

DEFAULT_MAX_PAYLOAD = 1024 * 1024

_current: ContextVar[WorkflowContext | None] = ContextVar("dramatiq_encore_workflow", default=None)


class Suspend(BaseException):
    """Unwinds a workflow function that must wait for a step.

    Derived from ``BaseException`` on purpose: user code written as ``try: ... except
    Exception:`` (as in the reference examples) must not swallow a suspension.
    """


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


class WorkflowContext:
    """Deterministic operations of one pass over one invocation."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        read_data: Callable[[str], tuple[bool, str | None]],
        clock: Callable[[], dt.datetime],
        origin: str,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.snapshot = snapshot
        self._read_data = read_data
        self._clock = clock
        self._origin = origin
        self._max_payload = max_payload
        self._counters: defaultdict[str, int] = defaultdict(int)
        self._step = 0
        self._last_now: dt.datetime | None = None
        self.entries: list[ValueEntry | StepEntry] = []
        self.new_steps: list[StepEntry] = []
        self.data_writes: dict[str, str] = {}
        self.waiting: list[int] = []
        self.suspending = False
        self.fatal: EncoreError | None = None
        self.deterministic = _Deterministic(self)

    # -- identity ---------------------------------------------------------------------
    @property
    def identity(self) -> WorkflowIdentity:
        return self.snapshot.meta.record.identity

    @property
    def invocation_id(self) -> str:
        return self.snapshot.meta.record.invocation_id

    @property
    def step_count(self) -> int:
        """Steps recorded so far in this invocation (including this pass's new ones)."""
        return max(self._step, len(self.snapshot.steps))

    # -- plumbing -----------------------------------------------------------------------
    def _check_live(self) -> None:
        # Once a pass suspends or hit non-determinism, nothing more is recorded: user code
        # that keeps going (a finally block, a swallowed error) cannot add steps or values.
        if self.fatal is not None:
            raise self.fatal
        if self.suspending:
            raise Suspend()

    def _nondeterminism(self, where: str, recorded: str, requested: str) -> NonDeterminismError:
        self.fatal = NonDeterminismError(self.identity.workflow_id, self.invocation_id, where, recorded, requested)
        return self.fatal

    def _value(self, kind: str, produce: Callable[[int], Any], name: str | None = None) -> Any:
        self._check_live()
        index = self._counters[kind]
        self._counters[kind] = index + 1
        recorded = self.snapshot.values.get(kind, ())
        if index < len(recorded):
            entry = recorded[index]
            if entry.name != name:
                raise self._nondeterminism(f"{kind} #{index + 1}", repr(entry.name), repr(name))
            return entry.v
        value = produce(index)
        self.entries.append(ValueEntry(k=kind, v=value, name=name))
        return value

    def _suspend(self, waiting: list[int]) -> Suspend:
        self.waiting = waiting
        self.suspending = True
        return Suspend()

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

        def produce(_: int) -> None:
            self.data_writes[key] = encoded

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

    # -- steps --------------------------------------------------------------------------
    def execute_task(self, task: StepTarget, *args: Any, **kwargs: Any) -> Invocation:
        """Run ``task`` as the next step and return its finished :class:`Invocation`.

        The first time, this sends the child's message and suspends the workflow; when the
        child's result arrives the workflow replays and this call returns it (or raises
        :class:`TaskError` when the child failed).
        """
        self._check_live()
        self._step += 1
        n = self._step
        json_args, json_kwargs = task.codec.dump_args(args, kwargs)
        check_size(f"arguments of step {n} ({task.name})", [json_args, json_kwargs], self._max_payload)
        requested = digest(json_args, json_kwargs)
        recorded = self.snapshot.steps.get(n)
        if recorded is None:
            self._new_step(n, task, json_args, json_kwargs, requested)
            raise self._suspend([n])
        if recorded.task != task.name or recorded.digest != requested:
            raise self._nondeterminism(
                f"step {n}",
                f"{recorded.task}(args digest {recorded.digest})",
                f"{task.name}(args digest {requested})",
            )
        outcome = self.snapshot.results.get(n)
        if outcome is None:
            raise self._suspend([n])
        return self._resolved(task, recorded, outcome)

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
        )
        self.entries.append(entry)
        self.new_steps.append(entry)

    def _resolved(self, task: StepTarget, step: StepEntry, outcome: Outcome) -> Invocation:
        from ..invocation import Invocation

        if outcome.ok:
            return Invocation.finished(step.child, step.identity, task.codec.load_result(outcome.value))
        error = outcome.error
        assert error is not None
        raise TaskError(error.type, error.message, error.traceback, outcome.invocation_id or step.child)
