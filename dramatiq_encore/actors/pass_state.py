"""What one pass over one invocation has seen and recorded: the base of ``WorkflowContext``.

The ``wf`` operations are split by kind (deterministic values and data in
:mod:`.context`, steps in :mod:`.steps`); this base holds what they share: the snapshot
being replayed, the entries the pass appends, what it will wait on, and the checks that
stop a pass that suspended, diverged or was cancelled from recording anything more.

The frontier is structural. Every ``wf`` operation starts with :meth:`PassState._enter`, and
every entry a pass records goes through :meth:`PassState._append`. A pass never calls the
state store: what it needs from it is handed in before it starts (the snapshot, the data
values already read), or the pass asks for it (:meth:`PassState._ask`, with a
:class:`Needs`) and waits, parked, while its driver fetches it (see
:class:`~.replay.Pass`). A *speculative* pass (run before its delivery, so before the
replay lease is held) asks for the lease at its first ``wf`` operation: no value is drawn,
no step is recorded, before the lease is held. A pass run with no driver stops instead
(:class:`Stop`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import EncoreError, MisuseError, NonDeterminismError, WorkflowCancelled
from ..identity import WorkflowIdentity
from ..state.models import AnyStep, ResolvedEntry, SignalEntry, StepEntry, TimerEntry, ValueEntry, WaitEntry

if TYPE_CHECKING:
    from .replay import Snapshot

DEFAULT_MAX_PAYLOAD = 1024 * 1024
#: The deterministic stream recording at which step operation a cancellation was raised.
CANCEL_STREAM = "cancelled"

JournalOut = ValueEntry | StepEntry | TimerEntry | WaitEntry | ResolvedEntry


class Suspend(BaseException):
    """Unwinds a workflow function that must wait for a step.

    Derived from ``BaseException`` on purpose: user code written as ``try: ... except
    Exception:`` (as in examples/error_handling/) must not swallow a suspension.
    """


class ContinueAsNew(Suspend):
    """Unwinds a workflow function that called ``wf.continue_as_new`` (a suspension: user
    ``except Exception`` blocks do not catch it either)."""


@dataclasses.dataclass(frozen=True)
class Needs:
    """What a pass that stopped needs from the state store before it can go on."""

    #: The replay lease (a speculative pass reached its first ``wf`` operation).
    lease: bool = False
    #: A workflow data value that no earlier pass read (``wf.get_data``).
    data: str | None = None


class Stop(Suspend):
    """Unwinds a pass that needs something from the state store and has no driver to ask."""


class Abandoned(Suspend):
    """Unwinds a pass its driver gave up (its speculation did not hold): nothing of it counts."""


#: Asks the pass's driver for what it needs; returns the answer (see :class:`~.replay.Pass`).
Ask = Callable[[Needs], Any]


def _running_task() -> Any:
    """The asyncio task running in this thread, or None (no loop runs here)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


class PassState:
    """The snapshot a pass replays and everything the pass records."""

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
        self.snapshot = snapshot
        #: Workflow data values read from the store for this pass: key -> JSON text, or None
        #: when the key is not set. A key missing here stops the pass (see :class:`Needs`).
        self._data = data if data is not None else {}
        self._speculative = speculative
        self._clock = clock
        self._origin = origin
        self._max_payload = max_payload
        self._counters: defaultdict[str, int] = defaultdict(int)
        self._first_step = snapshot.meta.record.first_step
        self._step = self._first_step
        self._ops = 0
        recorded = snapshot.values.get(CANCEL_STREAM)
        self._cancel_at: int | None = int(recorded[0].v) if recorded else None
        self.cancel_raised = False
        self.entries: list[JournalOut] = []
        self.new_steps: list[StepEntry] = []
        self.new_timers: list[TimerEntry | WaitEntry] = []
        self.data_writes: dict[str, str] = {}
        self.waiting: list[int] = []
        self.waiting_signals: list[str] = []
        self.wake_any = False
        self.claims: list[int] = []
        self.consumed: set[str] = set()
        self.suspending = False
        self.fatal: EncoreError | None = None
        #: The arguments of the next run when the workflow called ``continue_as_new``.
        self.continued: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        #: Set when the pass stopped: what it needs from the store.
        self.needs: Needs | None = None
        #: The driver to ask for what the pass needs (None: the pass stops instead).
        self.ask: Ask | None = None
        #: The asyncio task running an async task's coroutine (see :mod:`.coroutines`).
        self.loop_task: Any = None

    # -- identity ---------------------------------------------------------------------
    @property
    def identity(self) -> WorkflowIdentity:
        return self.snapshot.meta.record.identity

    @property
    def invocation_id(self) -> str:
        return self.snapshot.meta.record.invocation_id

    @property
    def step_count(self) -> int:
        """Steps this run has reached so far (each ``start_task``, ``sleep``, ``wait_for_signal``...).

        Deterministic: the same at the same point of every replay. A workflow can use it to
        bound its history, e.g. ``if wf.step_count >= 1000: wf.continue_as_new(state)``.
        """
        return self._step - self._first_step

    @property
    def last_step(self) -> int:
        """The number of the last step reached (numbering goes on across runs)."""
        return self._step

    # -- plumbing -----------------------------------------------------------------------
    def _enter(self) -> None:
        """The prologue of every ``wf`` operation.

        Once a pass suspended, stopped or hit non-determinism, nothing more is recorded:
        user code that keeps going (a finally block, a swallowed error) cannot add steps or
        values. A speculative pass asks for the lease here, before anything else.
        """
        if self.fatal is not None:
            raise self.fatal
        if self.loop_task is not None and _running_task() is not self.loop_task:
            raise self._foreign_task()
        if self.suspending:
            raise Suspend()
        if self._speculative:
            self._ask(Needs(lease=True))  # answered only when granted (else the pass is abandoned)
            self._speculative = False

    def _foreign_task(self) -> MisuseError:
        self.fatal = MisuseError(
            f"workflow {self.identity.workflow_id!r} called a wf operation from another asyncio task (or thread) "
            "than the one running its async task: steps of concurrent tasks would interleave in an order a replay "
            "cannot repeat; await coroutines that call wf.* in sequence, and run steps in parallel with "
            "wf.start_task and wf.gather"
        )
        return self.fatal

    def _append(self, entry: JournalOut) -> None:
        """Record ``entry`` in this pass (the only way a pass records anything)."""
        assert not self._speculative, "a speculative pass records nothing before it holds the lease"
        self.entries.append(entry)

    def _ask(self, needs: Needs) -> Any:
        """What the pass needs from the store: asked of its driver, or the pass stops."""
        if self.ask is None:
            self.needs = needs
            self.suspending = True
            raise Stop()
        return self.ask(needs)

    def _read_data(self, key: str) -> tuple[bool, str | None]:
        """A workflow data value: handed in for this pass, or asked for."""
        if key not in self._data:
            found, text = self._ask(Needs(data=key))
            self._data = {**self._data, key: text if found else None}
        text = self._data[key]
        return text is not None, text

    def _nondeterminism(self, where: str, recorded: str, requested: str) -> NonDeterminismError:
        self.fatal = NonDeterminismError(self.identity.workflow_id, self.invocation_id, where, recorded, requested)
        return self.fatal

    def _value(self, kind: str, produce: Callable[[int], Any], name: str | None = None) -> Any:
        self._enter()
        index = self._counters[kind]
        self._counters[kind] = index + 1
        recorded = self.snapshot.values.get(kind, ())
        if index < len(recorded):
            entry = recorded[index]
            if entry.name != name:
                raise self._nondeterminism(f"{kind} #{index + 1}", repr(entry.name), repr(name))
            return entry.v
        value = produce(index)
        self._append(ValueEntry(k=kind, v=value, name=name))
        return value

    def _suspend(self, waiting: list[int], signals: list[str] | None = None, wake_any: bool = False) -> Suspend:
        self.waiting = waiting
        self.waiting_signals = signals or []
        self.wake_any = wake_any
        self.suspending = True
        return Suspend()

    def _next_step(self) -> tuple[int, AnyStep | None]:
        """The next step number and what the journal recorded there (None: a new step)."""
        self._enter()
        self._step += 1
        return self._step, self.snapshot.steps.get(self._step)

    def _cancel_point(self, done: bool) -> None:
        """Raise :class:`WorkflowCancelled` here if this is where cancellation takes effect.

        Every step operation is a cancel point. Cancellation takes effect at the first one
        that cannot complete from the journal alone (``done`` False: it would start a step or
        wait), and that position is recorded, so replays raise at the same operation; later
        operations (cleanup in ``finally`` blocks) run normally.
        """
        index = self._ops
        self._ops += 1
        if self._cancel_at is not None:
            if index == self._cancel_at:
                raise self._cancelled()
            return
        if done or self.snapshot.cancel is None:
            return
        self._cancel_at = index
        self.cancel_raised = True
        self._append(ValueEntry(k=CANCEL_STREAM, v=index))
        raise self._cancelled()

    @property
    def cancelled_here(self) -> bool:
        """Cancellation was raised in this workflow (in this pass or, recorded, in an earlier one)."""
        return self._cancel_at is not None

    def _cancelled(self) -> WorkflowCancelled:
        reason = self.snapshot.cancel.reason if self.snapshot.cancel is not None else ""
        detail = f": {reason}" if reason else ""
        return WorkflowCancelled(f"workflow {self.identity.workflow_id!r} was cancelled{detail}")

    def unconsumed_signals(self) -> list[SignalEntry]:
        """Signals received that no step has consumed, in arrival order (carried to a new run)."""
        used = self.snapshot.consumed | self.consumed
        return [signal for signal in self.snapshot.signals if signal.id not in used]

    def _next_signal(self, name: str) -> SignalEntry | None:
        """The first signal ``name`` in journal order that no step has consumed yet."""
        for signal in self.snapshot.signals:
            if signal.name == name and signal.id not in self.snapshot.consumed and signal.id not in self.consumed:
                return signal
        return None
