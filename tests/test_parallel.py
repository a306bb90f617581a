"""Parallel steps: ``wf.start_task``, ``wf.gather``, ``wf.execute_tasks``, on both backend pairs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dramatiq_encore import NonDeterminismError, TaskError
from tests.conftest import Harness
from tests.support.waiting import wait_until as _until
from tests.test_contract import Tally, journal

WAIT = 20.0
FAN_OUT = 1_000
# Generous: the lead reads the printed time; this bound only catches a hang.
FAN_OUT_BOUND_S = {"memory": 60.0, "redis": 180.0}


def test_fan_out_of_a_thousand_children_with_fan_in(harness: Harness) -> None:
    app = harness.app
    runs = Tally()

    @app.task
    def square(i: int) -> int:
        runs.add()
        return i * i

    @app.task
    def fan_out(n: int) -> dict[str, Any]:
        handles = [fan_out.wf.start_task(square, i) for i in range(n)]
        results = fan_out.wf.gather(*handles)
        return {"total": sum(inv.result for inv in results), "ids": [inv.invocation_id for inv in results[:3]]}

    harness.start(threads=8)
    started = time.monotonic()
    inv = fan_out.send(FAN_OUT)
    result = inv.wait(timeout=FAN_OUT_BOUND_S[harness.kind])
    elapsed = time.monotonic() - started
    print(f"\n[fan-out] {FAN_OUT} children + fan-in on {harness.kind}: {elapsed:.2f} s")

    assert result["total"] == sum(i * i for i in range(FAN_OUT))
    assert result["ids"] == [f"{inv.invocation_id}/{n}" for n in (1, 2, 3)]
    assert runs[None] == FAN_OUT  # each child ran once
    entries = journal(app, inv.invocation_id)
    assert sum(e["e"] == "step" for e in entries) == FAN_OUT
    assert sum(e["e"] == "res" for e in entries) == FAN_OUT


def test_gather_raises_the_first_failure_in_call_order_and_keeps_the_others(harness: Harness) -> None:
    app = harness.app
    release = threading.Event()

    @app.task(max_retries=0)
    def work(i: int, fail: bool, wait: bool) -> int:
        if wait:
            release.wait(WAIT)  # step 2 fails last: "first" is call order, not finish order
        if fail:
            raise ValueError(f"item {i} is bad")
        return i

    @app.task
    def gathering() -> dict[str, Any]:
        wf = gathering.wf
        handles = [
            wf.start_task(work, 1, False, False),
            wf.start_task(work, 2, True, True),
            wf.start_task(work, 3, True, False),
            wf.start_task(work, 4, False, False),
        ]
        try:
            wf.gather(*handles)
        except TaskError as err:
            everything = wf.gather(*handles, return_exceptions=True)  # resolved: does not suspend
            return {
                "raised": [err.error_type, err.message, err.invocation_id],
                "all": [x.message if isinstance(x, TaskError) else x.result for x in everything],
            }
        return {"raised": None}

    harness.start()
    inv = gathering.send()
    time.sleep(0.3)
    release.set()
    result = inv.wait(timeout=WAIT)

    assert result["raised"] == ["ValueError", "item 2 is bad", f"{inv.invocation_id}/2"]
    assert result["all"] == [1, "item 2 is bad", "item 3 is bad", 4]


def test_execute_tasks_runs_children_in_parallel(harness: Harness) -> None:
    app = harness.app
    inside = Tally()
    peak = Tally()
    lock = threading.Lock()
    running = [0]

    @app.task
    def slow(i: int, pause: float) -> int:
        with lock:
            running[0] += 1
            if running[0] > peak[None]:
                peak.add()
        time.sleep(pause)
        with lock:
            running[0] -= 1
        inside.add()
        return i

    @app.task
    def parallel() -> list[int]:
        invs = parallel.wf.execute_tasks([(slow, i, 0.5) for i in range(4)])
        return [inv.result for inv in invs]

    harness.start(threads=8)
    started = time.monotonic()
    assert parallel.send().wait(timeout=WAIT) == [0, 1, 2, 3]
    # Four 0.5 s children in parallel: far less than the 2 s they take in sequence.
    assert time.monotonic() - started < 1.8
    assert peak[None] >= 2 and inside[None] == 4


def test_start_task_without_gather_is_fire_and_forget_and_steps_stay_positional(harness: Harness) -> None:
    app = harness.app
    ran = Tally()

    @app.task
    def background(tag: str) -> str:
        ran.add(tag)
        return tag

    @app.task
    def main_flow() -> dict[str, Any]:
        wf = main_flow.wf
        handle = wf.start_task(background, "fire")  # step 1, never gathered
        after = wf.execute_task(background, "awaited")  # step 2
        return {"handle": [handle.step, handle.invocation_id, handle.task_name], "after": after.invocation_id}

    harness.start()
    inv = main_flow.send()
    result = inv.wait(timeout=WAIT)
    assert result == {
        "handle": [1, f"{inv.invocation_id}/1", "background"],
        "after": f"{inv.invocation_id}/2",
    }
    assert _until(lambda: ran["fire"] == 1) and ran["awaited"] == 1


def test_changed_parallel_step_fails_with_nondeterminism(harness: Harness) -> None:
    app = harness.app
    code = {"changed": False}
    release = threading.Event()

    @app.task
    def held(i: int) -> int:
        release.wait(WAIT)
        return i

    @app.task
    def evolving() -> int:
        wf = evolving.wf
        first = wf.start_task(held, 1)
        second = wf.start_task(held, 20 if code["changed"] else 2)  # the code changes here
        return sum(inv.result for inv in wf.gather(first, second))

    harness.start()
    inv = evolving.send()
    assert _until(lambda: len(journal(app, inv.invocation_id)) == 2)
    code["changed"] = True
    release.set()
    with pytest.raises(TaskError) as err:
        inv.wait(timeout=WAIT)
    assert err.value.error_type == NonDeterminismError.__name__
    assert "step 2" in err.value.message

