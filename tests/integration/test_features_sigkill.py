"""SIGKILL recovery of parallel steps, durable timers and signals, across real worker processes.

Each test kills whole worker process groups (SIGKILL: no cleanup, unacked messages return to
RabbitMQ) while the feature is in use, restarts them, and checks the workflow completes with
the result and the recorded values of a run without the crash.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from types import ModuleType
from typing import Any

import pytest

from dramatiq_encore import TaskError
from tests.integration.workers import WorkerProcess, wait_until

pytestmark = pytest.mark.realservices


def _journal(wf_app: ModuleType, invocation_id: str) -> list[str]:
    _, raw = wf_app.app.state.load(invocation_id, 0)
    return list(raw)


def _count(wf_app: ModuleType, invocation_id: str, kind: str) -> int:
    return sum(1 for text in _journal(wf_app, invocation_id) if f'"e":"{kind}"' in text)


def _executions(wf_app: ModuleType, key: str) -> dict[str, int]:
    raw = wf_app.app.state.client.hgetall(f"{wf_app._prefix}:executions")
    return {str(k): int(v) for k, v in raw.items() if str(k).startswith(f"{key}:")}


def _result(wf_app: ModuleType, inv: Any, timeout: float = 60) -> Any:
    """``inv.wait(timeout)``; on a timeout, fail with what the store holds of the workflow (its
    status, meta and journal), so that a rare stall says where it stopped."""
    try:
        return inv.wait(timeout=timeout)
    except TimeoutError:
        meta = wf_app.app.state.get_meta(inv.invocation_id)
        journal = "\n".join(_journal(wf_app, inv.invocation_id))
        pytest.fail(f"{inv.invocation_id} did not finish in {timeout} s; meta: {meta!r}\njournal:\n{journal}")


def _restart(workers: list[WorkerProcess], pause: float = 0.3) -> None:
    for worker in workers:
        worker.kill()
    time.sleep(pause)
    for worker in workers:
        worker.start()


def test_sigkill_during_a_fan_out(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    # Given a fan-out of 60 children taking 0.2 s each (8 worker threads: several rounds)
    key = f"fan-{uuid.uuid4().hex[:6]}"
    inv = wf_app.fan_out_flow.send(key, 60, 0.2)
    # When both worker groups are SIGKILLed while children are running, and restarted
    assert wait_until(lambda: _count(wf_app, inv.invocation_id, "res") >= 10, timeout=30)
    _restart(workers)
    result = inv.wait(timeout=90)
    # Then every child's result is gathered once, in call order
    assert result["indexes"] == list(range(60))
    assert len(set(result["tokens"])) == 60
    assert _count(wf_app, inv.invocation_id, "step") == 60
    assert _count(wf_app, inv.invocation_id, "res") == 60
    executions = _executions(wf_app, key)
    assert all(executions.get(f"{key}:{i}", 0) >= 1 for i in range(60))


def test_sigkill_during_a_sleep(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    # Given a workflow sleeping 3 s between two steps
    key = f"sleep-{uuid.uuid4().hex[:6]}"
    inv = wf_app.sleepy_flow.send(key, 3.0)
    assert wait_until(lambda: _count(wf_app, inv.invocation_id, "timer") == 1, timeout=30)
    # When every worker dies while a worker holds the delayed wake-up, and they come back
    time.sleep(0.5)
    _restart(workers, pause=1.0)
    result = inv.wait(timeout=60)
    # Then the timer fired once, not before it was due, and the workflow finished
    slept = dt.datetime.fromisoformat(result["after"]) - dt.datetime.fromisoformat(result["before"])
    print(f"\n[timer] 3 s sleep across a SIGKILL: resumed after {slept.total_seconds():.3f} s")
    assert dt.timedelta(seconds=3.0) <= slept <= dt.timedelta(seconds=15)
    assert [s["i"] for s in result["steps"]] == [0, 1]
    assert _count(wf_app, inv.invocation_id, "timer") == 1
    resolutions = [t for t in _journal(wf_app, inv.invocation_id) if '"e":"res"' in t]
    assert len(resolutions) == 3  # step 1, the timer, step 3


def test_sigkill_while_waiting_for_a_signal(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    # Given a workflow waiting for a signal
    key = f"sig-{uuid.uuid4().hex[:6]}"
    inv = wf_app.signal_flow.send(key)
    assert wait_until(lambda: wf_app.app.get_invocation(inv.invocation_id).status == "suspended", timeout=30)
    # When every worker is killed, both signals are sent while none runs, and workers restart
    for worker in workers:
        worker.kill()
    first = wf_app.app.signal(inv.invocation_id, "go", {"n": 1})
    second = wf_app.app.signal(inv.invocation_id, "go", {"n": 2})
    time.sleep(0.3)
    for worker in workers:
        worker.start()
    result = _result(wf_app, inv)
    # Then each signal was recorded once and consumed once, in the order it was recorded
    # (two messages queued together may be processed in either order by the worker threads)
    signals = [t for t in _journal(wf_app, inv.invocation_id) if '"e":"sig"' in t]
    assert len(signals) == 2 and {first, second} == {s.split('"id":"')[1].split('"')[0] for s in signals}
    order = [1, 2] if first in signals[0] else [2, 1]
    assert result["signals"] == [{"n": n} for n in order]
    # And a kill while the second signal's pass runs loses nothing either
    again = wf_app.signal_flow.send(f"{key}-b")
    assert wait_until(lambda: wf_app.app.get_invocation(again.invocation_id).status == "suspended", timeout=30)
    wf_app.app.signal(again.invocation_id, "go", "a")
    wf_app.app.signal(again.invocation_id, "go", "b")
    _restart(workers)
    assert sorted(_result(wf_app, again)["signals"]) == ["a", "b"]


def test_sigkill_during_cancellation_cleanup(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    # Given a sleeping workflow that is cancelled, whose cleanup step takes 1 s
    key = f"cancel-{uuid.uuid4().hex[:6]}"
    inv = wf_app.cancellable_flow.send(key)
    assert wait_until(lambda: _count(wf_app, inv.invocation_id, "timer") == 1, timeout=30)
    assert wait_until(lambda: wf_app.app.get_invocation(inv.invocation_id).status == "suspended", timeout=30)
    wf_app.app.cancel(inv.invocation_id, reason="test")
    # When every worker is killed while the cleanup step runs, and restarted
    assert wait_until(lambda: _executions(wf_app, key).get(f"{key}:99", 0) >= 1, timeout=30)
    _restart(workers)
    # Then the workflow ends cancelled, after its cleanup step
    with pytest.raises(TaskError) as err:
        inv.wait(timeout=60)
    assert err.value.error_type == "Cancelled" and inv.status == "cancelled"
    assert _count(wf_app, inv.invocation_id, "step") == 1 and _count(wf_app, inv.invocation_id, "cancel") == 1


def test_sigkill_while_a_deadline_races_a_child(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    # Given a 4 s child racing a 1.5 s deadline
    key = f"deadline-{uuid.uuid4().hex[:6]}"
    inv = wf_app.deadline_flow.send(key, 4.0, 1.5)
    assert wait_until(lambda: _count(wf_app, inv.invocation_id, "timer") == 1, timeout=30)
    # When every worker dies before the deadline, and comes back
    _restart(workers)
    result = inv.wait(timeout=60)
    # Then the deadline won, and the replayed decision did not change when the child finished
    assert "did not finish within 1.5 s" in result["first"] and result["after"]["i"] == 1
    # And the late child, finishing after its workflow did, appends nothing to the journal
    late = wf_app.app.get_invocation(f"{inv.invocation_id}/1")
    assert wait_until(lambda: late.status == "succeeded", timeout=30)
    time.sleep(0.5)  # its result message's turn
    assert _count(wf_app, inv.invocation_id, "res") == 2  # the timer and step 3
    final = wf_app.app.get_invocation(inv.invocation_id).wait(timeout=1)
    assert final == result


def test_sigkill_across_continue_as_new(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    # Given a workflow that continues as new after each of its 8 slow steps
    key = f"loop-{uuid.uuid4().hex[:6]}"
    inv = wf_app.looping_flow.send(key, 0, 8, 0)
    state = wf_app.app.state

    def run() -> int:
        meta = state.get_meta(inv.invocation_id)
        return -1 if meta is None else meta.record.run

    # When every worker is killed in the middle of the runs, twice
    for after in (2, 5):
        assert wait_until(lambda a=after: run() >= a, timeout=30)
        _restart(workers)
    result = inv.wait(timeout=60)
    # Then every run happened once, in order, and the last run's journal is its own
    assert result == {"total": sum(range(8)), "rounds": 8}
    assert run() == 7 and _count(wf_app, inv.invocation_id, "step") == 1
    executions = _executions(wf_app, key)
    assert all(executions.get(f"{key}:{i}", 0) >= 1 for i in range(8))


def test_sigkill_then_deploy_a_patched_version_mid_workflow(
    wf_app: ModuleType, workers: list[WorkerProcess]
) -> None:
    # Given a workflow run by version 1 that is past the patch point (waiting on step 2)
    key = f"ver-{uuid.uuid4().hex[:6]}"
    inv = wf_app.versioned_flow.send(key, 1.0)
    assert wait_until(lambda: _count(wf_app, inv.invocation_id, "step") >= 2, timeout=30)
    # When every worker is SIGKILLed and restarted with version 2 of the code
    for worker in workers:
        worker.kill()
        worker.env = {**worker.env, "ENCORE_TEST_CODE_VERSION": "2"}
    time.sleep(0.3)
    for worker in workers:
        worker.start()
    # Then the in-flight run replays the old branch, and a new run takes the new one
    old = inv.wait(timeout=60)
    assert old["path"] == "old" and old["steps"] == [0, 1] and old["version"] == 2
    new = wf_app.versioned_flow.send(f"{key}-new", 0.0).wait(timeout=30)
    assert new["path"] == "new" and new["steps"] == [0, 1]


def test_sigkill_while_an_async_workflow_runs(wf_app: ModuleType, workers: list[WorkerProcess]) -> None:
    # Given an async workflow of 8 steps (async and sync activities, 0.3 s each)
    key = f"async-{uuid.uuid4().hex[:6]}"
    inv = wf_app.async_steps.send(key, 8, 0.3)
    # When every worker is SIGKILLed mid-run, twice, and restarted
    for after in (2, 5):
        assert wait_until(lambda a=after: _count(wf_app, inv.invocation_id, "res") >= a, timeout=30)
        _restart(workers)
    result = inv.wait(timeout=90)
    # Then it completed with every step once, in order, and replays returned the recorded values
    assert [step["i"] for step in result["steps"]] == list(range(8))
    assert _count(wf_app, inv.invocation_id, "step") == 8 and _count(wf_app, inv.invocation_id, "res") == 8
    entries = [json.loads(text) for text in _journal(wf_app, inv.invocation_id)]
    assert [e["v"] for e in entries if e["e"] == "v" and e["k"] == "random"] == result["random"]
    assert [e["v"] for e in entries if e["e"] == "v" and e["k"] == "uuid"] == result["uuid"]
    executions = _executions(wf_app, key)
    assert all(executions.get(f"{key}:async:{i}", 0) >= 1 for i in range(0, 8, 2))
    assert all(executions.get(f"{key}:{i}", 0) >= 1 for i in range(1, 8, 2))
