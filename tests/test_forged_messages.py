"""The trust model: a producer on the broker may start, signal and cancel workflows, nothing more.

Each test forges one of the engine's own messages the way a producer with publish rights
could, against a workflow suspended at a step, and checks that the message is
dead-lettered and changes nothing: the workflow ends with what its real children returned.
Both backend pairs (stub + memory, RabbitMQ + Redis).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dramatiq_encore.errors import StepTimeout
from tests.conftest import Harness
from tests.support.forge import dead_lettered, forge
from tests.support.waiting import wait_until

WAIT = 30


class Flows:
    """A workflow whose children block until released, a sleeper and a signal waiter."""

    def __init__(self, harness: Harness) -> None:
        app = harness.app
        self.release = threading.Event()
        self.harness = harness
        release = self.release

        @app.task(max_retries=0)
        def child(x: str) -> str:
            release.wait(WAIT)
            return f"real:{x}"

        @app.task
        def flow(x: str) -> str:
            first = flow.wf.execute_task(child, x).result
            return first + "|" + flow.wf.execute_task(child, x + "2").result

        @app.task
        def sleeper() -> str:
            sleeper.wf.sleep(3600)
            return "woke"

        @app.task
        def waiter() -> Any:
            try:
                return waiter.wf.wait_for_signal("go")
            except StepTimeout:
                return "timed out"

        self.child, self.flow, self.sleeper, self.waiter = child, flow, sleeper, waiter
        harness.start()

    def suspended(self, task: Any, *args: Any) -> str:
        """Start ``task`` and wait until it is suspended at its first step."""
        inv = task.send(*args)
        assert wait_until(lambda: inv.status == "suspended", timeout=WAIT), inv.status
        return str(inv.invocation_id)

    def journal(self, workflow_id: str) -> list[str]:
        return self.harness.app.state.load(workflow_id, 0)[1]

    def refused(self, before: int, workflow_id: str) -> None:
        """The forged message was dead-lettered, and the workflow still waits at its step."""
        assert wait_until(lambda: dead_lettered(self.harness) == before + 1, timeout=WAIT)
        assert self.harness.app.get_invocation(workflow_id).status == "suspended"
        assert not any('"e":"res"' in entry for entry in self.journal(workflow_id))

    def finishes_for_real(self, workflow_id: str) -> None:
        self.release.set()
        assert self.harness.app.get_invocation(workflow_id).wait(timeout=WAIT) == "real:a|real:a2"


@pytest.fixture
def flows(harness: Harness) -> Flows:
    return Flows(harness)


def _result(workflow_id: str, step: int, child: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "result", "invocation_id": workflow_id, "step": step, "child": child, **extra}


@pytest.mark.parametrize(
    "outcome",
    [
        pytest.param({"ok": True, "value": "FORGED"}, id="fake success"),
        pytest.param({"ok": False, "error": {"type": "PaymentDeclined", "message": "forged"}}, id="fake failure"),
    ],
)
def test_a_result_carrying_an_outcome_is_refused(flows: Flows, outcome: dict[str, Any]) -> None:
    wid = flows.suspended(flows.flow, "a")
    before = dead_lettered(flows.harness)
    forge(flows.harness, "flow", _result(wid, 1, f"{wid}/1", outcome=outcome))
    flows.refused(before, wid)
    flows.finishes_for_real(wid)


def test_a_result_naming_another_child_is_refused(flows: Flows) -> None:
    wid = flows.suspended(flows.flow, "a")
    before = dead_lettered(flows.harness)
    forge(flows.harness, "flow", _result(wid, 1, f"{wid}/7"))
    flows.refused(before, wid)
    flows.finishes_for_real(wid)


def test_a_result_copying_another_finished_workflow_is_refused(flows: Flows) -> None:
    # Given another workflow that finished, and one suspended at step 1
    flows.release.set()
    done = flows.flow.send("other")
    assert done.wait(timeout=WAIT) == "real:other|real:other2"
    flows.release.clear()
    wid = flows.suspended(flows.flow, "a")
    before = dead_lettered(flows.harness)
    # When a result for step 1 names the finished workflow's child (or the workflow itself)
    forge(flows.harness, "flow", _result(wid, 1, f"{done.invocation_id}/1"))
    flows.refused(before, wid)
    forge(flows.harness, "flow", _result(wid, 1, done.invocation_id))
    flows.refused(before + 1, wid)
    flows.finishes_for_real(wid)


def test_a_result_for_a_future_step_is_refused(flows: Flows) -> None:
    wid = flows.suspended(flows.flow, "a")
    before = dead_lettered(flows.harness)
    forge(flows.harness, "flow", _result(wid, 2, f"{wid}/2"))
    flows.refused(before, wid)
    flows.finishes_for_real(wid)


@pytest.mark.slow
def test_a_result_before_the_child_recorded_its_outcome_is_refused(flows: Flows) -> None:
    # Given a workflow whose step-1 child still runs
    wid = flows.suspended(flows.flow, "a")
    before = dead_lettered(flows.harness)
    # When its result is forged without an outcome (the store would read the child's own)
    forge(flows.harness, "flow", _result(wid, 1, f"{wid}/1"))
    # Then it is re-sent a few times (a real result never comes before its child's commit)
    # and dead-lettered, and the real result resolves the step
    flows.refused(before, wid)
    flows.finishes_for_real(wid)


def test_an_early_timer_on_a_sleep_is_refused(flows: Flows) -> None:
    wid = flows.suspended(flows.sleeper)
    before = dead_lettered(flows.harness)
    forge(flows.harness, "sleeper", {"kind": "timer", "invocation_id": wid, "step": 1, "due": 0})
    flows.refused(before, wid)


def test_a_timer_with_the_recorded_due_time_still_waits_for_it(flows: Flows) -> None:
    # Given a producer that learnt the recorded due time of a one-hour sleep
    wid = flows.suspended(flows.sleeper)
    due = flows.harness.app.state.timer_due(wid, 1)
    assert due is not None and due > time.time() + 3000
    # When it sends that timer now
    forge(flows.harness, "sleeper", {"kind": "timer", "invocation_id": wid, "step": 1, "due": due})
    time.sleep(1.0)
    # Then the sleep goes on: the store's clock says it is not due
    assert flows.harness.app.get_invocation(wid).status == "suspended"
    assert not any('"e":"res"' in entry for entry in flows.journal(wid))


def test_a_timer_on_a_child_step_is_refused(flows: Flows) -> None:
    wid = flows.suspended(flows.flow, "a")
    before = dead_lettered(flows.harness)
    forge(flows.harness, "flow", {"kind": "timer", "invocation_id": wid, "step": 1, "due": 0})
    flows.refused(before, wid)
    flows.finishes_for_real(wid)


def test_a_timer_on_a_signal_wait_is_refused(flows: Flows) -> None:
    wid = flows.suspended(flows.waiter)
    before = dead_lettered(flows.harness)
    forge(flows.harness, "waiter", {"kind": "timer", "invocation_id": wid, "step": 1, "due": 0})
    flows.refused(before, wid)
    # The next real signal is consumed as usual (no StepTimeout)
    flows.harness.app.signal(wid, "go", {"approved": True})
    assert flows.harness.app.get_invocation(wid).wait(timeout=WAIT) == {"approved": True}


def _start(workflow_id: str, step: int) -> dict[str, Any]:
    identity = {"workflow_id": workflow_id, "parent_workflow_id": None, "root_workflow_id": workflow_id,
                "workflow_type": "flow"}
    return {"kind": "start", "invocation_id": f"{workflow_id}/{step}", "identity": identity,
            "parent": {"invocation_id": workflow_id, "task": "flow", "queue": "QUEUE", "step": step}}


def test_a_forged_child_start_changes_nothing(flows: Flows) -> None:
    # Given a workflow suspended at step 1, its child running
    wid = flows.suspended(flows.flow, "a")
    queue = flows.harness.app.default_queue
    before = dead_lettered(flows.harness)
    # When starts are forged for step 1 (which recorded other arguments) and step 2 (not reached)
    for step in (1, 2):
        envelope = _start(wid, step)
        envelope["parent"]["queue"] = queue
        forge(flows.harness, "child", envelope, args=["FORGED"])
    # Then both are dead-lettered (step 1's recorded other arguments, step 2's once the workflow
    # records that step), and the workflow ends with what its real children returned
    flows.finishes_for_real(wid)
    assert wait_until(lambda: dead_lettered(flows.harness) == before + 2, timeout=WAIT)
    assert flows.harness.app.get_invocation(wid).wait(timeout=1) == "real:a|real:a2"
