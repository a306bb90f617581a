"""What one pass over one invocation has seen and recorded: the base of ``WorkflowContext``.

The ``wf`` operations are split by kind (deterministic values and data in
:mod:`.context`, steps in :mod:`.steps`); this base holds what they share: the snapshot
being replayed, the entries the pass appends, what it will wait on, and the checks that
stop a pass that suspended, diverged or was cancelled from recording anything more.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import EncoreError, NonDeterminismError, WorkflowCancelled
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
    Exception:`` (as in the reference examples) must not swallow a suspension.
    """


class ContinueAsNew(Suspend):
    """Unwinds a workflow function that called ``wf.continue_as_new`` (a suspension: user
    ``except Exception`` blocks do not catch it either)."""


class PassState:
    """The snapshot a pass replays and everything the pass records."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        clock: Callable[[], dt.datetime],
        origin: str,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.snapshot = snapshot
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
        #: A pass that runs while its delivery is on its way calls this once, before it uses
        #: anything the snapshot does not hold yet (see :meth:`_at_frontier`): True when the
        #: delivery confirmed the snapshot (and extended it with what arrived), False when
        #: the pass must be abandoned (the runtime then runs it properly).
        self.gate: Callable[[], bool] | None = None
        self.abandoned = False

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
    def _at_frontier(self) -> None:
        """Before a value, a step or a result that the snapshot does not hold yet.

        Up to here the pass only replayed what the snapshot holds, which nothing that arrives
        later can change (the journal is append-only and a step is resolved once), so a pass
        started before its delivery returned goes on from here once the gate confirmed it.
        """
        if self.gate is None:
            return
        gate, self.gate = self.gate, None
        if not gate():
            self.abandoned = True
            self.suspending = True
            raise Suspend()

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
        if index >= len(recorded):
            self._at_frontier()
            recorded = self.snapshot.values.get(kind, ())
        if index < len(recorded):
            entry = recorded[index]
            if entry.name != name:
                raise self._nondeterminism(f"{kind} #{index + 1}", repr(entry.name), repr(name))
            return entry.v
        value = produce(index)
        self.entries.append(ValueEntry(k=kind, v=value, name=name))
        return value

    def _suspend(self, waiting: list[int], signals: list[str] | None = None, wake_any: bool = False) -> Suspend:
        self.waiting = waiting
        self.waiting_signals = signals or []
        self.wake_any = wake_any
        self.suspending = True
        return Suspend()

    def _next_step(self) -> tuple[int, AnyStep | None]:
        """The next step number and what the journal recorded there (None: a new step)."""
        self._check_live()
        self._step += 1
        if self._step not in self.snapshot.results:
            self._at_frontier()
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
        self.entries.append(ValueEntry(k=CANCEL_STREAM, v=index))
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
