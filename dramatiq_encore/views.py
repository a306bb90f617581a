"""What operators see: pydantic models of workflow listings, invocation trees and histories.

``app.list_workflows()`` returns a :class:`WorkflowPage`, ``app.describe()`` a
:class:`WorkflowDescription` and ``app.export()`` a :class:`History`. The CLI, the
dashboard and the tests use these models alike; their JSON (``model_dump(mode="json")``)
is what ``encore list --json``, ``encore show --json``, ``encore export`` and the
dashboard's API print.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from .state.models import ErrorInfo

HISTORY_FORMAT = "dramatiq-encore-history/1"


class WorkflowSummary(BaseModel):
    """One root workflow in a listing."""

    workflow_id: str
    #: The workflow's task name (its type).
    type: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None


class WorkflowPage(BaseModel):
    """A page of workflows, newest first; pass ``cursor`` back for the next page (None: the last)."""

    items: list[WorkflowSummary]
    cursor: str | None = None


class RecordedValue(BaseModel):
    """A deterministic value the invocation recorded: ``kind`` is its stream (random, uuid,
    utc_now, side_effect, data, patch, ...), ``name`` the operation's name where it has one."""

    kind: str
    name: str | None = None
    value: Any = None


class SignalView(BaseModel):
    """A signal the invocation received, and whether a ``wait_for_signal`` consumed it."""

    signal_id: str
    name: str
    payload: Any = None
    consumed: bool = False


StepKind = Literal["task", "timer", "signal"]


class StepView(BaseModel):
    """Step ``n`` of an invocation.

    ``status``: ``succeeded`` / ``failed`` (resolved), ``running`` (its child exists and has
    not finished), ``queued`` (its start was sent and no worker has created the child yet:
    see ``note``), ``waiting`` (a timer or a signal wait not resolved yet).
    """

    n: int
    kind: StepKind
    #: The task's name; ``sleep`` for a timer; ``wait_for_signal:<name>`` for a signal wait.
    task: str
    status: str
    queue: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_s: float | None = None
    #: How many passes the child ran (a leaf task's attempts, retries included).
    attempts: int = 0
    args_digest: str | None = None
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: The timer's due time, for a sleep or a signal wait with a timeout.
    due_at: dt.datetime | None = None
    result: Any = None
    error: ErrorInfo | None = None
    #: What to look at when the step does not move on (see the README's stuck-workflow guide).
    note: str = ""
    child: InvocationView | None = None


class InvocationView(BaseModel):
    """One invocation (a workflow or a task it executed) with every step it recorded."""

    invocation_id: str
    workflow_id: str
    type: str
    status: str
    queue: str
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    #: Passes run so far (each replays the recorded steps and goes on).
    passes: int = 0
    run: int = 0
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: ErrorInfo | None = None
    values: list[RecordedValue] = Field(default_factory=list)
    signals: list[SignalView] = Field(default_factory=list)
    cancel_requested: bool = False
    steps: list[StepView] = Field(default_factory=list)


class WorkflowDescription(InvocationView):
    """``app.describe(workflow_id)``: the root invocation, its tree of steps, and its data."""

    data: dict[str, Any] = Field(default_factory=dict)


class InvocationHistory(BaseModel):
    """One invocation's record, status, outcome and journal, as the store holds them."""

    invocation_id: str
    status: str
    record: dict[str, Any]
    outcome: dict[str, Any] | None = None
    journal: list[dict[str, Any]]


class History(BaseModel):
    """``encore export``: everything needed to replay a workflow's tree against new code."""

    format: str = HISTORY_FORMAT
    workflow_id: str
    exported_at: dt.datetime
    data: dict[str, Any] = Field(default_factory=dict)
    invocations: list[InvocationHistory]


StepView.model_rebuild()
