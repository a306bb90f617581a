"""Re-executing recorded histories against the current code: ``encore replay``, ``encore
check`` and :func:`dramatiq_encore.testing.assert_replays`.

A replay runs one pass of every orchestrating invocation of a history (one that recorded a
step: a child task, a timer or a signal wait) over its recorded journal with the pure
engine: no broker, no state writes, and no task body runs that the history holds a result
for. Leaf tasks are not run (their bodies do the side effects; their results are in their
parents' journals). It diverges when:

- the code asks, at a recorded position, for another task, other arguments, another
  value or another kind of step (the engine's ``NonDeterminismError``);
- the history finished and the code now asks for a step past its end, or ends differently
  (another status);
- the code no longer reaches a step the history recorded.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..actors import passes
from ..actors.pass_state import DEFAULT_MAX_PAYLOAD, Needs
from ..actors.replay import PassOutcome, Snapshot
from ..errors import ConfigurationError, NonDeterminismError
from ..state.models import FINISHED, InvocationMeta, InvocationRecord, StepEntry, TimerEntry, WaitEntry
from ..views import History, InvocationHistory

if TYPE_CHECKING:
    from ..app import Encore


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where a history and the current code part ways."""

    workflow_id: str
    invocation_id: str
    step: str
    recorded: str
    requested: str

    def __str__(self) -> str:
        return (
            f"workflow {self.workflow_id!r}, invocation {self.invocation_id!r}, {self.step}: recorded "
            f"{self.recorded}; the code asks for {self.requested}"
        )

    def error(self) -> NonDeterminismError:
        return NonDeterminismError(self.workflow_id, self.invocation_id, self.step, self.recorded, self.requested)


def load_history(source: str | Path | dict[str, Any] | History) -> History:
    """A history from a file ``encore export`` wrote, its parsed JSON, or the model itself."""
    if isinstance(source, History):
        return source
    try:
        if isinstance(source, dict):
            return History.model_validate(source)
        return History.model_validate_json(Path(source).read_text("utf-8"))
    except (OSError, ValidationError, ValueError) as exc:
        raise ConfigurationError(f"not a history written by `encore export` ({source!r}): {exc}") from None


def replay(app: Encore, history: History) -> list[Divergence]:
    """The first divergence of each orchestrating invocation of ``history`` (empty: clean)."""
    found = []
    for invocation in history.invocations:
        divergence = replay_invocation(app, history, invocation)
        if divergence is not None:
            found.append(divergence)
    return found


def _steps(journal: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(e["n"]): e for e in journal if e.get("e") in ("step", "timer", "wait")}


def replay_invocation(app: Encore, history: History, invocation: InvocationHistory) -> Divergence | None:
    steps = _steps(invocation.journal)
    if not steps:
        return None  # a leaf task: its body is not run (side effects), its result is recorded
    record = InvocationRecord.model_validate(invocation.record)
    where = (record.identity.workflow_id, invocation.invocation_id)
    task = app.tasks.get(record.task)
    if task is None:
        return Divergence(*where, "the invocation", f"task {record.task!r}", "no such task in this code")
    snapshot = Snapshot(InvocationMeta(record=record, status="running"))
    snapshot.apply([json.dumps(entry) for entry in invocation.journal])
    data = history.data.get(record.identity.workflow_id, {})

    def answer(needs: Needs) -> Any:
        if needs.data is not None:  # a read the history did not record: the exported data
            key = needs.data
            return (key in data, json.dumps(data[key]) if key in data else None)
        return True

    outcome = passes.run(task, snapshot, "replay", app.settings.max_payload or DEFAULT_MAX_PAYLOAD, answer)
    return _compare(where, invocation, steps, outcome)


def _compare(
    where: tuple[str, str], invocation: InvocationHistory, steps: dict[int, dict[str, Any]], outcome: PassOutcome
) -> Divergence | None:
    if isinstance(outcome.exception, NonDeterminismError):
        exc = outcome.exception
        return Divergence(*where, exc.step, exc.recorded, exc.requested)
    finished = invocation.status in FINISHED
    if finished and outcome.new_steps + outcome.new_timers:
        new = sorted([*outcome.new_steps, *outcome.new_timers], key=lambda s: s.n)[0]
        return Divergence(*where, f"step {new.n}", f"no step: the workflow {invocation.status}", _asked(new))
    if finished and outcome.finished and outcome.status != invocation.status:
        error = "" if outcome.error is None else f" ({outcome.error.type}: {outcome.error.message})"
        return Divergence(*where, "its end", f"it {invocation.status}", f"it {outcome.status}{error}")
    last = max(steps)
    if outcome.last_step < last and (outcome.finished or finished):
        recorded = steps[outcome.last_step + 1]
        return Divergence(*where, f"step {outcome.last_step + 1}", _recorded(recorded), "no further step")
    return None


def _asked(step: StepEntry | TimerEntry | WaitEntry) -> str:
    if isinstance(step, StepEntry):
        return f"task {step.task!r} with arguments digest {step.digest}"
    if isinstance(step, TimerEntry):
        return f"sleep({step.seconds})"
    return f"wait_for_signal({step.name!r})"


def _recorded(entry: dict[str, Any]) -> str:
    if entry["e"] == "step":
        return f"task {entry['task']!r} with arguments digest {entry['digest']}"
    if entry["e"] == "timer":
        return f"sleep({entry['seconds']})"
    return f"wait_for_signal({entry['name']!r})"


def check(app: Encore, workflow_type: str | None = None, page: int = 200) -> list[Divergence]:
    """Replay every unfinished root workflow of ``app``'s tasks in the live store against the
    code on disk, read-only; the divergences found (empty: safe to deploy)."""
    found: list[Divergence] = []
    for status in ("pending", "running", "suspended"):
        cursor = None
        while True:
            listing = app.list_workflows(status=status, workflow_type=workflow_type, limit=page, cursor=cursor)
            for item in listing.items:
                if item.type in app.tasks:
                    found += replay(app, app.export(item.workflow_id))
            cursor = listing.cursor
            if cursor is None:
                break
    return found
