"""The inputs both runs share, the crash-free reference run, and the comparison.

Deterministic values derive from the invocation id, so the same workflow ids run embedded
(stub broker, in-memory state, no ENCORE_* variables) produce exactly the random and uuid
values a crash-free cluster run would. The reference runs in a subprocess::

    python -m chaos.reference SPECS.json OUT.json

and writes, per workflow, the same record :func:`collect` reads from the chaos cluster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dramatiq_encore import TaskError
from dramatiq_encore.state.backend import StateBackend
from dramatiq_encore.state.models import FINISHED, Outcome, ResolvedEntry, StepEntry, ValueEntry, journal_entry

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ("chain", "family", "guarded")
GUARD_MODES = ("ok", "child_fails", "child_fails", "leaf_fails")


@dataclasses.dataclass(frozen=True)
class WorkflowSpec:
    """One workflow of the run: its id (the same in both runs), task and arguments."""

    workflow_id: str
    task: str
    args: list[Any]


def plan_workload(seed: int, count: int) -> list[WorkflowSpec]:
    """``count`` workflows of mixed shapes, the same for the same seed."""
    rng = random.Random(f"workload-{seed}")
    specs = []
    for i in range(count):
        shape = rng.choices(SHAPES, weights=(5, 3, 3))[0]
        key = f"wf-s{seed}-{i:04d}-{shape}"
        delay_ms = rng.randint(20, 300)
        if shape == "chain":
            args: list[Any] = [key, rng.randint(5, 20), delay_ms]
        elif shape == "family":
            args = [key, rng.randint(2, 3), rng.randint(1, 3), delay_ms]
        else:
            args = [key, rng.choice(GUARD_MODES), delay_ms]
        specs.append(WorkflowSpec(key, shape, args))
    return specs


# -- reading a workflow tree back -----------------------------------------------------------
def _outcome(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    error = None if outcome.error is None else [outcome.error.type, outcome.error.message]
    return {"ok": outcome.ok, "value": outcome.value, "error": error, "invocation": outcome.invocation_id}


def _fold(raw: list[str]) -> dict[str, Any]:
    """A journal as streams: values per kind, clock readings, steps and results per step."""
    values: dict[str, list[Any]] = {}
    clock: list[str] = []
    steps: dict[str, list[Any]] = {}
    results: dict[str, list[Any]] = {}
    for text in raw:
        entry = journal_entry.validate_json(text)
        if isinstance(entry, ValueEntry):
            if entry.k == "utc_now":
                clock.append(entry.v)
            else:
                values.setdefault(entry.k, []).append([entry.name, entry.v])
        elif isinstance(entry, StepEntry):
            step = {"task": entry.task, "digest": entry.digest, "child": entry.child, "wf": entry.identity.workflow_id}
            steps.setdefault(str(entry.n), []).append(step)
        elif isinstance(entry, ResolvedEntry):
            results.setdefault(str(entry.n), []).append(_outcome(entry.o))
    return {"values": values, "clock": clock, "steps": steps, "results": results}


def collect(state: StateBackend, workflow_id: str) -> dict[str, Any] | None:
    """Every invocation of a root workflow's tree and the data of each of its workflows."""
    if state.get_meta(workflow_id) is None:
        return None
    invocations: dict[str, Any] = {}
    data: dict[str, Any] = {}
    todo = [workflow_id]
    while todo:
        invocation_id = todo.pop()
        meta, raw = state.load(invocation_id, 0)
        if meta is None:
            invocations[invocation_id] = None
            continue
        folded = _fold(raw)
        invocations[invocation_id] = {"task": meta.record.task, "status": meta.status,
                                      "outcome": _outcome(meta.outcome), **folded}
        todo.extend(step["child"] for entries in folded["steps"].values() for step in entries)
        wf = meta.record.identity.workflow_id
        if wf not in data:
            data[wf] = {key: json.loads(value) for key, value in state.workflow_data(wf).items()}
    return {"status": invocations[workflow_id]["status"], "invocations": invocations, "data": data}


# -- comparing ---------------------------------------------------------------------------------
def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _clock_problems(name: str, expected: list[str], got: list[str]) -> list[str]:
    if len(expected) != len(got):
        return [f"{name}: {len(got)} utc_now values, reference has {len(expected)}"]
    times = [dt.datetime.fromisoformat(text) for text in got]
    if any(later <= earlier for earlier, later in itertools.pairwise(times)):
        return [f"{name}: utc_now values do not strictly increase: {got}"]
    return []


def _invocation_problems(name: str, expected: dict[str, Any] | None, got: dict[str, Any] | None) -> list[str]:
    if got is None or expected is None:
        return [f"{name}: {'missing in the chaos run' if got is None else 'missing in the reference'}"]
    problems = [
        f"{name}: {field} differs: reference {_short(expected[field])} | chaos {_short(got[field])}"
        for field in ("task", "status", "outcome", "values", "steps", "results")
        if expected[field] != got[field]
    ]
    return problems + _clock_problems(name, expected["clock"], got["clock"])


def compare(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """What differs between the reference record of a workflow and the chaos one."""
    problems = []
    for invocation_id in sorted(set(expected["invocations"]) | set(got["invocations"])):
        problems += _invocation_problems(
            invocation_id, expected["invocations"].get(invocation_id), got["invocations"].get(invocation_id)
        )
    for workflow_id in sorted(set(expected["data"]) | set(got["data"])):
        want, have = expected["data"].get(workflow_id), got["data"].get(workflow_id)
        if want != have:
            problems.append(f"data of {workflow_id} differs: reference {_short(want)} | chaos {_short(have)}")
    return problems


# -- the reference run ---------------------------------------------------------------------------
def start_reference(specs: list[WorkflowSpec], workdir: Path, timeout: float) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the embedded reference run in a subprocess with no ENCORE_* (or CHAOS_*) settings."""
    source, target = workdir / "specs.json", workdir / "reference.json"
    source.write_text(json.dumps([dataclasses.asdict(spec) for spec in specs]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_", "CHAOS_"))}
    env.update(CHAOS_NO_SLEEP="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "chaos.reference", str(source), str(target), str(timeout)]
    log = open(workdir / "reference.log", "wb")  # noqa: SIM115 - closed when the child exits
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process, target


def finish_reference(process: subprocess.Popen[bytes], target: Path, timeout: float) -> dict[str, Any]:
    """The reference records by workflow id; raises when the reference run failed."""
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise RuntimeError(f"the reference run did not finish within {timeout:.0f} s") from None
    if code != 0 or not target.exists():
        log = (target.parent / "reference.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the reference run failed (exit {code}):\n{log}")
    records: dict[str, Any] = json.loads(target.read_text())
    return records


def _run(source: Path, target: Path, timeout: float) -> int:
    from chaos import app as module  # embedded: the parent removed every ENCORE_* variable

    assert module.app.embedded, "the reference run must not see ENCORE_* settings"
    specs = [WorkflowSpec(**item) for item in json.loads(source.read_text())]
    handles = [module.TASKS[s.task].send_with_options(args=s.args, workflow_id=s.workflow_id) for s in specs]
    deadline = time.monotonic() + timeout
    for handle in handles:
        try:
            handle.wait(timeout=max(0.1, deadline - time.monotonic()))
        except TaskError:
            pass
        except TimeoutError:
            break
    records = {s.workflow_id: collect(module.app.state, s.workflow_id) for s in specs}
    module.app.close()
    unfinished = [wid for wid, rec in records.items() if rec is None or rec["status"] not in FINISHED]
    target.write_text(json.dumps(records))
    if unfinished:
        print(f"reference: {len(unfinished)} workflows unfinished, e.g. {unfinished[:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_run(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])))
