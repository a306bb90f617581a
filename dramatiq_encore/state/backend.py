"""The state backend: an ABC over a few atomic primitives.

Each primitive is one atomic step (one Lua script on Redis, one critical section in memory).
The engine never composes read-modify-write sequences out of them, so correctness under
concurrent workers rests on these primitives alone:

- :meth:`deliver` records a trigger (start, step result) exactly once and, when the
  invocation can make progress and nobody holds it, grants the caller the replay lease;
- :meth:`load` returns the invocation's metadata and its journal from a given index, so a
  worker that already holds a prefix loads only the tail;
- :meth:`commit` appends a pass's journal entries, writes its workflow data, sets what it
  waits on, and releases the lease in one step, telling the caller to run again when every
  awaited step was resolved while the pass ran.

Triggers are checked against what the invocation recorded before they change anything
(the trust model: only a step's own child resolves it, a timer only once due):

- ``start`` creates the invocation; a child's start only when its parent's step recorded
  this child (its fingerprint: task, argument digest, identity and parent), and it is
  *early* while the parent is active and has not recorded the step yet;
- ``result`` resolves step n with the outcome the child's own record holds, only when step n
  recorded that child (it is *early* while the child has recorded no outcome);
- ``timer`` resolves step n only when step n is a timer due at the time the message carries
  and that time has passed by the store's clock (else *due*, with the recorded time);
- ``signal`` and ``cancel`` append the journal entry they carry and wake the invocation (a
  signal only when it waits on that name; a cancel always); a signal is refused while the
  limit of unconsumed signals waits.

A message for a finished invocation, or for a step of an earlier run, changes nothing. A
result, timer or signal for an invocation the store does not know marks that id as lost
(:meth:`StateBackend.lost_reason`), as does a child's start whose parent it does not know.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Literal

from pydantic import BaseModel

from .models import CancelEntry, InvocationMeta, InvocationRecord, Outcome, SignalEntry

DEFAULT_LEASE_MS = 5_000
DEFAULT_RETENTION_S = 7 * 24 * 3600
DEFAULT_MAX_SIGNALS = 1_000
#: A timer counts as due this close to its due time (dramatiq's eta has 1 ms steps).
DUE_SLACK_S = 0.005
Verdict = Literal["ok", "unknown", "conflict", "refused", "early", "due", "ignored"]


class Trigger(BaseModel):
    """Why a message reached an invocation; ``key`` makes delivery idempotent."""

    kind: Literal["start", "result", "timer", "signal", "cancel"]
    key: str
    step: int | None = None
    child: str | None = None
    #: timer: the outcome that resolves ``step``.
    outcome: Outcome | None = None
    #: timer: the due time the message carries (it must be the one the step recorded).
    due: float | None = None
    #: signal: its name (wakes an invocation waiting on it).
    name: str | None = None
    #: signal, cancel: the journal entry (JSON text) appended once.
    entry: str | None = None
    #: signal: the most signals that may wait unconsumed (this one is refused past it).
    limit: int = DEFAULT_MAX_SIGNALS

    @classmethod
    def start(cls) -> Trigger:
        return cls(kind="start", key="start")

    @classmethod
    def result(cls, step: int, child: str) -> Trigger:
        return cls(kind="result", key=f"res:{step}", step=step, child=child)

    @classmethod
    def timer(cls, step: int, due: float) -> Trigger:
        return cls(kind="timer", key=f"timer:{step}", step=step, due=due, outcome=Outcome(ok=True, value=None))

    @classmethod
    def signal(cls, name: str, payload: Any, signal_id: str, limit: int = DEFAULT_MAX_SIGNALS) -> Trigger:
        entry = SignalEntry(name=name, payload=payload, id=signal_id).model_dump_json()
        return cls(kind="signal", key=f"sig:{signal_id}", name=name, entry=entry, limit=limit)

    @classmethod
    def cancel(cls, reason: str = "") -> Trigger:
        return cls(kind="cancel", key="cancel", entry=CancelEntry(reason=reason).model_dump_json())


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What :meth:`StateBackend.deliver` found and did.

    ``verdict`` is ``ok`` when the trigger was recorded (``duplicate`` when it had been
    already), else why not: ``unknown`` (no such invocation; ``detail`` is ``lost`` when the
    id was marked lost), ``conflict`` (a start with other arguments), ``refused`` (the
    trigger contradicts what was recorded; ``detail`` says how), ``early`` (try again
    shortly), ``due`` (a timer before its time; ``detail`` is the recorded due time) or
    ``ignored`` (a finished invocation or an earlier run; ``detail`` says which).

    When the lease was granted and ``load_from`` was given, ``entries`` holds the journal
    from ``loaded_from`` on (the same round trip as the delivery) and ``record`` the record
    when ``loaded_from`` is 0. ``loaded_from`` is 0 when the journal is shorter than asked
    (the id was reused after its retention): the caller's cached prefix is stale.
    """

    verdict: Verdict
    duplicate: bool
    status: str
    token: str | None = None
    locked: bool = False
    detail: str = ""
    record: InvocationRecord | None = None
    entries: tuple[str, ...] | None = None
    loaded_from: int = 0

    @property
    def exists(self) -> bool:
        return self.verdict != "unknown"

    @property
    def conflict(self) -> bool:
        return self.verdict == "conflict"


def empty_state(delivery: Delivery) -> bool:
    """The delivery granted the lease on an invocation with an empty journal in its first run:
    a pass that assumed no state at all (a child's first pass run before its delivery) fits."""
    record = delivery.record
    return delivery.token is not None and not delivery.entries and (record is None or record.run == 0)


@dataclasses.dataclass
class Commit:
    """Everything one pass writes, applied atomically by :meth:`StateBackend.commit`."""

    entries: list[str]
    status: str
    outcome: Outcome | None = None
    waiting: list[int] = dataclasses.field(default_factory=list)
    data: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    #: Signal names the pass waits on (a signal of that name wakes the invocation).
    signals: list[str] = dataclasses.field(default_factory=list)
    #: Wake when any one awaited step or signal resolves, instead of all of them.
    wake_any: bool = False
    #: Steps the pass resolved itself (it consumed a signal): the commit is stale, and not
    #: applied, when one of them was resolved meanwhile (by its timer).
    claims: list[int] = dataclasses.field(default_factory=list)
    #: The journal length the pass saw; when it grew meanwhile (a signal, a cancel) the
    #: pass runs again instead of suspending. None skips the check.
    seen: int | None = None
    #: Continue as new: replace the record with this one and the journal with ``entries``,
    #: forget what the old run waited on and resolved, keep the lease and rerun. Stale (not
    #: applied) when the journal grew during the pass: what arrived must be carried over.
    reset: InvocationRecord | None = None
    #: A first pass run before its state was read: applied only to the empty state of the
    #: first run (see :func:`empty_state`), else stale.
    empty_only: bool = False
    #: What the pass's new steps recorded, by step number, for :meth:`StateBackend.deliver`
    #: to check triggers against (see :func:`~.models.step_record`).
    steps: dict[int, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CommitResult:
    """``ok``: applied. ``rerun``: the caller still holds the lease and must run a pass again
    (with ``ok=False``: the commit was stale and nothing was written)."""

    ok: bool
    rerun: bool = False
    #: The journal index at which the pass's entries were appended (None: not known, or a new
    #: run began). Equal to the pass's ``seen``: nothing arrived in between, so a cached
    #: snapshot can fold the entries itself instead of loading them again.
    appended_at: int | None = None


@dataclasses.dataclass(frozen=True)
class Then:
    """A delivery made right after a first pass's commit (see :class:`FirstPass`): a leaf's
    result to its parent, resumed in place; ``load_from`` and ``run`` as for ``deliver``."""

    invocation_id: str
    trigger: Trigger
    load_from: int = 0
    run: int = 0


def deliver_then_commit(
    state: StateBackend,
    invocation_id: str,
    trigger: Trigger,
    record: InvocationRecord,
    commit: Commit,
    then: Then | None = None,
) -> tuple[Delivery, CommitResult | None, Delivery | None]:
    """:meth:`FirstPass.finish_first_pass` in separate round trips, on any backend."""
    delivery = state.deliver(invocation_id, trigger, record, load_from=0)
    committed = None
    if delivery.token is not None and empty_state(delivery):
        committed = state.commit(invocation_id, delivery.token, dataclasses.replace(commit, empty_only=True))
    if then is None or committed is None or not committed.ok:
        return delivery, committed, None
    return delivery, committed, state.deliver(then.invocation_id, then.trigger, None, then.load_from, then.run)


class StateBackend(abc.ABC):
    """Where invocations, their journals and workflow data live: what the normal path needs.

    ``MemoryState`` is for embedded mode and tests; ``RedisState`` for production. Both are
    public: a user may build one and pass it to ``Encore(state=...)``.
    """

    lease_ms: int = DEFAULT_LEASE_MS
    retention_s: int = DEFAULT_RETENTION_S
    #: The store keeps a timer index that workers can poll (see :class:`TimerIndex`).
    timer_index: bool = False
    #: Errors meaning "the store is briefly unreachable": the message is re-sent later
    #: instead of failing (and without using up the task's retries).
    transient_errors: tuple[type[BaseException], ...] = ()

    @abc.abstractmethod
    def deliver(
        self,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord | None,
        load_from: int | None = None,
        run: int = 0,
    ) -> Delivery:
        """Record ``trigger`` once; create the invocation from ``record`` on a start.

        Grants the lease (``Delivery.token``) when the invocation is active, waits on
        nothing unresolved and is not held; then, if ``load_from`` is given, also returns the
        journal from that index (saving the :meth:`load` round trip), or from 0 with the
        record when the stored record's ``run`` is not ``run`` (the caller's prefix belongs
        to an earlier run). A start whose record digest differs from the stored one reports
        ``conflict``.
        """

    @abc.abstractmethod
    def load(self, invocation_id: str, start: int) -> tuple[InvocationMeta | None, list[str]]:
        """Metadata and journal entries ``start..end`` (raw JSON)."""

    @abc.abstractmethod
    def commit(self, invocation_id: str, token: str, commit: Commit) -> CommitResult:
        """Apply a pass if ``token`` still holds the lease; release it unless a rerun is due."""

    @abc.abstractmethod
    def release(self, invocation_id: str, token: str) -> None:
        """Give the lease back without writing (a failed attempt that will be retried)."""

    @abc.abstractmethod
    def renew(self, invocation_id: str, token: str) -> bool:
        """Extend the lease; False when it was lost."""

    @abc.abstractmethod
    def get_meta(self, invocation_id: str) -> InvocationMeta | None:
        """The invocation's metadata, or None when no worker has created it yet."""

    @abc.abstractmethod
    def read_data(self, workflow_id: str, key: str) -> tuple[bool, str | None]:
        """One workflow data value as JSON text: (found, value)."""

    @abc.abstractmethod
    def workflow_data(self, workflow_id: str) -> dict[str, str]:
        """All workflow data values as JSON text."""

    @abc.abstractmethod
    def timer_due(self, invocation_id: str, step: int) -> float | None:
        """The due time step ``step`` recorded while it is an unresolved timer of an active
        invocation, else None."""

    @abc.abstractmethod
    def lost_reason(self, invocation_id: str) -> str | None:
        """Why the id was marked lost (a message named it, the store had no record), or None."""

    @abc.abstractmethod
    def needs_result(self, invocation_id: str) -> bool:
        """Whether a finished child's result should be sent to this parent
        again: while the parent is active. A pass the result triggered may have died before its
        commit, or after it and before sending what it decided (a child that resumed its parent
        in place leaves no result message to redeliver); the re-sent result is a duplicate
        trigger that runs the stalled pass, or repairs what that pass should have sent."""

    @abc.abstractmethod
    def existing(self, invocation_ids: list[str]) -> list[bool]:
        """Which of these invocations have been created."""

    @abc.abstractmethod
    def wait_finished(self, invocation_id: str, timeout: float | None) -> InvocationMeta | None:
        """Block until the invocation is finished (or the timeout passes); its metadata.

        Raises :class:`~dramatiq_encore.errors.StateLost` when the id is marked lost.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe(self) -> str:
        """Where the state lives, without credentials (for logs and errors)."""
        return type(self).__name__


class TimerIndex(abc.ABC):
    """Optional interface: every unresolved timer step by due time, written by the commit that
    records it and removed by the delivery of its wake-up (or its run's end)."""

    @abc.abstractmethod
    def claim_due_timers(self, limit: int, claim_s: float) -> list[tuple[str, int, float]]:
        """Timers due now, as (invocation id, step, due), each claimed for ``claim_s`` seconds
        (due again then, if its wake-up was lost)."""


class FirstPass(abc.ABC):
    """Optional interface for the fast path (:mod:`dramatiq_encore.actors.fast`): a child's
    first pass, run before its state was read, delivered and committed in one round trip."""

    @abc.abstractmethod
    def finish_first_pass(
        self,
        invocation_id: str,
        trigger: Trigger,
        record: InvocationRecord,
        commit: Commit,
        then: Then | None = None,
    ) -> tuple[Delivery, CommitResult | None, Delivery | None]:
        """Deliver a start with ``load_from=0`` and, when that found the empty state (see
        :func:`empty_state`), commit ``commit`` (with ``empty_only``): a first pass that needed
        nothing from the state. The commit result is None when it was not applied (the delivery
        is then handled as usual). ``then`` is delivered right after an applied commit, in the
        same round trip where the backend can (its delivery is returned last, else None)."""
