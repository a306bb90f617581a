"""The runtime's events, for metrics, tracing and logs to listen to.

The runtime calls :data:`events` at fixed points of handling a message; listeners (see
:mod:`.metrics`, :mod:`.tracing`) subscribe once per process. A listener that raises is
logged and never breaks a pass: observing must not change what the engine does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class PassEnded:
    """One pass over an invocation finished (committed, or given up)."""

    invocation_id: str
    workflow_id: str
    workflow_type: str
    #: The pass's status (succeeded, failed, cancelled, suspended, continued, stopped).
    status: str
    #: Seconds spent replaying recorded steps before the pass reached new ground.
    replay_seconds: float
    #: Seconds of the whole pass (replay included).
    seconds: float
    #: True for the root invocation of its workflow tree.
    root: bool
    #: The invocation's task (``workflow_type`` is its workflow's: the root's task, for a child
    #: in its parent's workflow).
    task: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class StepResolved:
    """Step ``n`` of ``invocation_id`` was resolved by this process (recorded exactly once).

    Emitted by the process whose delivery recorded the resolution (a child's result, a due
    timer) or whose commit did (a signal a wait step consumed). ``task`` is the child's task,
    ``"timer"`` or ``"signal:<name>"``; ``started_at`` the step's recorded time (``t`` of its
    journal entry; for a result recorded while the parent was not at hand, the child's creation).
    """

    invocation_id: str
    workflow_id: str
    n: int
    task: str
    child: str | None
    ok: bool
    #: Epoch seconds: when the step was recorded (its start message sent) and resolved.
    started_at: float | None
    resolved_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowStarted:
    """A root workflow or a child invocation was created by this process's delivery."""

    invocation_id: str
    workflow_id: str
    workflow_type: str
    root: bool
    task: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowFinished:
    """An invocation reached a finished status (recorded by this process's commit)."""

    invocation_id: str
    workflow_id: str
    workflow_type: str
    status: str
    root: bool
    task: str = ""
    #: Epoch seconds: when the invocation was created (its start message's timestamp).
    created_at: float | None = None


Listener = Callable[[Any], None]


class Events:
    """A tiny synchronous event bus: ``subscribe(kind, fn)``, ``emit(event)``.

    Listener lists are replaced, never changed in place, so a thread may subscribe while
    another emits. With no listener, ``emit`` is one dict lookup; the runtime asks
    :meth:`wants` first where building the event itself costs something.
    """

    def __init__(self) -> None:
        self._listeners: dict[type, list[Listener]] = {}
        #: The kinds something listens to (``kind in events.heard`` is the cheapest check).
        self.heard: frozenset[type] = frozenset()

    def subscribe(self, kind: type, listener: Listener) -> None:
        self._listeners[kind] = [*self._listeners.get(kind, ()), listener]
        self.heard = frozenset(k for k, fns in self._listeners.items() if fns)

    def unsubscribe(self, kind: type, listener: Listener) -> None:
        listeners = list(self._listeners.get(kind, ()))
        if listener in listeners:
            listeners.remove(listener)
            self._listeners[kind] = listeners
            self.heard = frozenset(k for k, fns in self._listeners.items() if fns)

    def wants(self, kind: type) -> bool:
        """True when something listens to ``kind``."""
        return kind in self.heard

    def emit(self, event: Any) -> None:
        for listener in self._listeners.get(type(event), ()):
            try:
                listener(event)
            except Exception:  # observing never breaks a pass
                logger.exception("an observer of %s failed", type(event).__name__)


events = Events()
