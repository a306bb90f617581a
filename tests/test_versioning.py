"""wf.patched: in-flight workflows replay the old branch; new runs take the new one."""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import Harness
from tests.support.waiting import wait_until as _until

WAIT = 20


def test_patched_keeps_in_flight_runs_on_the_old_branch(harness: Harness) -> None:
    app = harness.app
    code = {"version": 1}
    gate = threading.Event()

    @app.task
    def step(i: int) -> int:
        if i == 2:
            gate.wait(WAIT)
        return i

    @app.task
    def shipping(order: str) -> dict[str, Any]:
        shipping.wf.execute_task(step, 1)
        branch = "old"
        if code["version"] >= 2 and shipping.wf.patched("insure"):
            shipping.wf.execute_task(step, 10)  # version 2 insures the parcel first
            branch = "new"
        shipping.wf.execute_task(step, 2)
        return {"branch": branch, "steps": shipping.wf.step_count}

    harness.start()
    # Given a run of version 1 already past the patch point (waiting on step 2)
    in_flight = shipping.send("A")
    assert _until(lambda: app.get_invocation(f"{in_flight.invocation_id}/2").status in ("running", "succeeded"))
    # When version 2 is deployed and the run resumes
    code["version"] = 2
    gate.set()
    # Then it replays the old branch; a run started now takes the new one and records it
    assert in_flight.wait(timeout=WAIT) == {"branch": "old", "steps": 2}
    assert shipping.send("B").wait(timeout=WAIT) == {"branch": "new", "steps": 3}


def test_patched_before_the_patch_point_takes_the_new_branch(harness: Harness) -> None:
    app = harness.app
    code = {"version": 1}
    gate = threading.Event()

    @app.task
    def slow(i: int) -> int:
        gate.wait(WAIT)
        return i

    @app.task
    def flow() -> str:
        flow.wf.execute_task(slow, 1)
        return "new" if code["version"] >= 2 and flow.wf.patched("p") else "old"

    harness.start()
    # Given a run of version 1 that has not reached the patch point yet
    inv = flow.send()
    assert _until(lambda: app.get_invocation(f"{inv.invocation_id}/1").status in ("running", "succeeded"))
    code["version"] = 2
    gate.set()
    # Then it reaches the point with the new code, so it takes the new branch
    assert inv.wait(timeout=WAIT) == "new"

