"""Reference scenarios, load and SIGKILL recovery across two real `dramatiq` worker processes."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid as uuidlib
from types import ModuleType
from typing import Any

import pytest

from dramatiq_encore import TaskError
from dramatiq_encore.state.models import ValueEntry, journal_entry
from tests.integration.workers import WorkerProcess, wait_until

pytestmark = pytest.mark.realservices


def test_reference_scenarios_across_two_worker_processes(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    order = wf_app.order_workflow.send("A-1")
    boundary = wf_app.calls_isolated.send({"k": 1})
    ok = wf_app.guarded_order.send({"order_id": "O-1", "items": [{"id": 1}]})
    bad = wf_app.guarded_order.send({"order_id": "O-2", "items": []})

    result = order.wait(timeout=30)
    assert result["tracking"].startswith("TRK-A-1-") and result["payment"]["status"] == "completed"
    assert wf_app.app.get_workflow_data(order.workflow.workflow_id)["tracking"] == result["tracking"]
    b = boundary.wait(timeout=30)
    assert b["parent"] != b["child"] and b["child_result"]["parent"] == b["parent"]
    assert ok.wait(timeout=30)["status"] == "completed"
    failed = bad.wait(timeout=30)
    assert failed["status"] == "error" and "ValueError" in failed["error"] and failed["cleanup"]["order_id"] == "O-2"
    assert wf_app.app.get_workflow_data(bad.invocation_id)["status"] == "error"


def test_one_hundred_workflows_at_once(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    handles = [wf_app.order_workflow.send(f"L-{i}") for i in range(100)]
    results = [h.wait(timeout=120) for h in handles]
    assert [r["order_id"] for r in results] == [f"L-{i}" for i in range(100)]
    assert len({r["payment"]["payment_id"] for r in results}) == 100


def _derived(seed: str, kind: str, index: int) -> bytes:
    return hashlib.sha256(f"{seed}\x00{kind}\x00{index}".encode()).digest()


def _expected_values(seed: str, steps: int) -> tuple[list[float], list[str]]:
    """What a crash-free run with this seed produces for random() and uuid()."""
    randoms = [(int.from_bytes(_derived(seed, "random", i)[:8], "big") >> 11) / 2**53 for i in range(steps)]
    uuids = [str(uuidlib.UUID(bytes=_derived(seed, "uuid", i)[:16], version=4)) for i in range(steps)]
    return randoms, uuids


def _recorded(app: Any, invocation_id: str) -> dict[str, list[Any]]:
    _meta, raw = app.state.load(invocation_id, 0)
    values: dict[str, list[Any]] = {}
    for text in raw:
        entry = journal_entry.validate_json(text)
        if isinstance(entry, ValueEntry):
            values.setdefault(entry.k, []).append(entry.v)
    return values


def _kill_each_worker_mid_workflow(state: Any, invocation_id: str, workers: list[WorkerProcess]) -> None:
    """SIGKILL each worker's process group once the workflow resolved 2, then 5 steps; restart it."""

    def steps_done() -> int:
        _, raw = state.load(invocation_id, 0)
        return sum(1 for t in raw if '"e":"res"' in t)

    for worker, after in ((workers[0], 2), (workers[1], 5)):
        assert wait_until(lambda n=after: steps_done() >= n, timeout=30)
        worker.kill()
        time.sleep(0.2)
        worker.start()


def test_sigkill_each_worker_during_a_ten_step_workflow(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    # Given a 10-step workflow whose steps take 0.3 s each
    key = f"kill-{uuidlib.uuid4().hex[:6]}"
    inv = wf_app.ten_steps.send(key, 10, 0.3)
    state = wf_app.app.state
    # When each worker's process group is SIGKILLed mid-workflow and restarted
    _kill_each_worker_mid_workflow(state, inv.invocation_id, workers)
    started = time.monotonic()
    result = inv.wait(timeout=60)
    assert time.monotonic() - started < 40

    # Then the result and every recorded value equal the crash-free expectation
    meta = state.get_meta(inv.invocation_id)
    randoms, uuids = _expected_values(meta.record.seed, 10)
    assert result["random"] == randoms and result["uuid"] == uuids
    recorded = _recorded(wf_app.app, inv.invocation_id)
    assert recorded["random"] == randoms and recorded["uuid"] == uuids
    assert recorded["utc_now"] == result["now"]
    times = [dt.datetime.fromisoformat(t) for t in result["now"]]
    assert times == sorted(times) and len(set(times)) == 10
    assert [s["i"] for s in result["steps"]] == list(range(10))
    data = wf_app.app.get_workflow_data(inv.invocation_id)
    assert [data[f"step_{i}"] for i in range(10)] == uuids
    executions = {str(k): int(v) for k, v in state.client.hgetall(f"{wf_app._prefix}:executions").items()}
    assert all(executions.get(f"{key}:{i}", 0) >= 1 for i in range(10))


def test_sigkill_each_worker_while_plain_steps_resume_their_parent_in_place(
    wf_app: ModuleType, workers: list[WorkerProcess]
) -> None:
    # Given a 10-step workflow of plain steps (no wf value: each one's worker resumes the
    # parent in place, without a result message)
    key = f"plain-{uuidlib.uuid4().hex[:6]}"
    inv = wf_app.plain_steps.send(key, 10, 0.3)
    state = wf_app.app.state
    # When each worker's process group is SIGKILLed mid-workflow and restarted
    _kill_each_worker_mid_workflow(state, inv.invocation_id, workers)
    result = inv.wait(timeout=60)

    # Then the result and every recorded value equal the crash-free expectation
    meta = state.get_meta(inv.invocation_id)
    randoms, _ = _expected_values(meta.record.seed, 10)
    assert result["random"] == randoms and _recorded(wf_app.app, inv.invocation_id)["random"] == randoms
    assert result["steps"] == [{"i": i, "square": i * i} for i in range(10)]
    executions = {str(k): int(v) for k, v in state.client.hgetall(f"{wf_app._prefix}:executions").items()}
    assert all(executions.get(f"{key}:plain:{i}", 0) >= 1 for i in range(10))


def test_failed_child_surfaces_as_task_error_across_processes(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    inv = wf_app.reserve.send({"order_id": "X", "items": []})
    with pytest.raises(TaskError) as err:
        inv.wait(timeout=30)
    assert err.value.error_type == "ValueError" and "no items" in str(err.value)
