"""Tables and trees for people (``--json`` prints the models for scripts instead)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from ..views import InvocationView, StepView, WorkflowDescription, WorkflowSummary


def when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def workflows(items: Sequence[WorkflowSummary]) -> str:
    rows = [[w.workflow_id, w.type, w.status, when(w.started_at), when(w.finished_at)] for w in items]
    return table(["WORKFLOW ID", "TYPE", "STATUS", "STARTED (UTC)", "FINISHED (UTC)"], rows)


def _duration(step: StepView) -> str:
    return "-" if step.duration_s is None else f"{step.duration_s:.3f} s"


def _step_lines(step: StepView, indent: str) -> list[str]:
    head = f"{indent}{step.n:>3}  {step.kind:<6} {step.task:<28} {step.status:<10} {when(step.started_at)}"
    head += f"  {_duration(step):>10}"
    if step.kind == "task":
        head += f"  attempts {step.attempts}"
    lines = [head]
    detail = indent + "       "
    if step.error is not None:
        lines.append(f"{detail}error: {step.error.type}: {step.error.message}")
    elif step.status == "succeeded" and step.kind == "task":
        lines.append(f"{detail}result: {short(step.result)}")
    if step.due_at is not None and step.status == "waiting":
        lines.append(f"{detail}due at {when(step.due_at)}")
    if step.note:
        lines.append(f"{detail}note: {step.note}")
    if step.child is not None and step.child.steps:
        lines += invocation(step.child, detail)
    return lines


def invocation(view: InvocationView, indent: str = "") -> list[str]:
    lines = [f"{indent}invocation {view.invocation_id}  {view.type}  {view.status}  passes {view.passes}"]
    for step in view.steps:
        lines += _step_lines(step, indent + "  ")
    return lines


def description(view: WorkflowDescription) -> str:
    lines = [
        f"workflow {view.workflow_id}  type {view.type}  status {view.status}",
        f"  started {when(view.started_at)}  finished {when(view.finished_at)}  passes {view.passes}  run {view.run}",
        f"  arguments {short(view.args)} {short(view.kwargs)}",
    ]
    if view.status == "succeeded":
        lines.append(f"  result {short(view.result, 200)}")
    lines.append("  steps:" if view.steps else "  steps: none recorded yet")
    for step in view.steps:
        lines += _step_lines(step, "    ")
    if view.values:
        lines.append("  recorded values:")
        lines += [f"    {v.kind}{'' if v.name is None else ' ' + v.name} = {short(v.value)}" for v in view.values]
    if view.signals:
        lines.append("  signals:")
        lines += [f"    {s.name} {short(s.payload)} {'consumed' if s.consumed else 'waiting'}" for s in view.signals]
    lines.append(f"  data: {short(view.data, 200)}")
    if view.error is not None:
        lines.append(f"  error: {view.error.type}: {view.error.message}")
        lines += [f"    {line}" for line in view.error.traceback.rstrip().splitlines()]
    return "\n".join(lines)
