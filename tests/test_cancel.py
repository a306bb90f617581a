"""Cancellation: ``app.cancel(workflow_id)``, cleanup in ``finally``, cascade to children."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dramatiq_encore import TaskError
from dramatiq_encore.errors import WorkflowCancelled
from tests.conftest import Harness
from tests.support.waiting import wait_until as _until
from tests.test_contract import Tally, journal

WAIT = 20.0


def _suspended_at(harness: Harness, invocation_id: str, kind: str) -> bool:
    entries = journal(harness.app, invocation_id)
    return any(e["e"] == kind for e in entries) and harness.app.get_invocation(invocation_id).status == "suspended"


def test_cancel_runs_cleanup_steps_and_ends_cancelled(harness: Harness) -> None:
    app = harness.app
    cleaned = Tally()
    raised = Tally()

    @app.task
    def release_hold(order_id: str) -> str:
        cleaned.add(order_id)
        return f"released {order_id}"

    @app.task
    def reservation(order_id: str) -> str:
        wf = reservation.wf
        try:
            wf.sleep(3600)  # an hour-long hold
            return "kept"
        except WorkflowCancelled:
            raised.add()
            raise
        finally:
            wf.set_data("cleanup", wf.execute_task(release_hold, order_id).result)

    harness.start()
    inv = reservation.send("R-1")
    assert _until(lambda: _suspended_at(harness, inv.invocation_id, "timer"))
    app.cancel(inv.invocation_id, reason="customer withdrew")

    with pytest.raises(TaskError) as err:
        inv.wait(timeout=WAIT)
    assert err.value.error_type == "Cancelled" and "customer withdrew" in err.value.message
    assert inv.status == "cancelled"
    assert cleaned.snapshot() == {"R-1": 1}
    assert app.get_workflow_data(inv.invocation_id)["cleanup"] == "released R-1"
    assert raised[None] >= 2  # raised where it took effect, and again at the same step on replay


def test_cancel_cascades_to_pending_children(harness: Harness) -> None:
    app = harness.app

    @app.task(force_new_workflow=True)
    def approval_flow(ticket: str) -> Any:
        return approval_flow.wf.wait_for_signal("approved")

    @app.task
    def joined_step(ticket: str) -> Any:
        return joined_step.wf.wait_for_signal("never")

    @app.task
    def ticket_flow(ticket: str) -> list[Any]:
        handles = [ticket_flow.wf.start_task(approval_flow, ticket), ticket_flow.wf.start_task(joined_step, ticket)]
        return [inv.result for inv in ticket_flow.wf.gather(*handles)]

    harness.start()
    inv = ticket_flow.send("T-1")
    children = [f"{inv.invocation_id}/1", f"{inv.invocation_id}/2"]
    assert _until(lambda: all(_suspended_at(harness, child, "wait") for child in children))
    app.cancel(inv.invocation_id)

    with pytest.raises(TaskError) as err:
        inv.wait(timeout=WAIT)
    assert err.value.error_type == "Cancelled"
    for child in children:
        with pytest.raises(TaskError) as child_err:
            app.get_invocation(child).wait(timeout=WAIT)
        assert child_err.value.error_type == "Cancelled"


def test_a_cancelled_child_surfaces_in_its_parent_as_task_error(harness: Harness) -> None:
    app = harness.app

    @app.task(force_new_workflow=True)
    def long_wait() -> Any:
        return long_wait.wf.wait_for_signal("done")

    @app.task
    def parent() -> dict[str, Any]:
        try:
            parent.wf.execute_task(long_wait)
        except TaskError as exc:
            return {"error_type": exc.error_type}
        return {"error_type": None}

    harness.start()
    inv = parent.send()
    child = f"{inv.invocation_id}/1"
    assert _until(lambda: _suspended_at(harness, child, "wait"))
    app.cancel(child)  # the child workflow's id
    assert inv.wait(timeout=WAIT) == {"error_type": "Cancelled"}


def test_cancel_caught_by_except_exception_still_ends_cancelled(harness: Harness) -> None:
    @harness.app.task
    def forgiving() -> str:
        try:
            forgiving.wf.sleep(3600)
        except Exception as exc:  # the style of examples/error_handling/
            return f"handled {type(exc).__name__}"
        return "slept"

    harness.start()
    inv = forgiving.send()
    assert _until(lambda: _suspended_at(harness, inv.invocation_id, "timer"))
    harness.app.cancel(inv.invocation_id)
    with pytest.raises(TaskError) as err:
        inv.wait(timeout=WAIT)
    assert err.value.error_type == "Cancelled"


def test_cancelling_a_finished_workflow_changes_nothing(harness: Harness) -> None:
    @harness.app.task
    def quick() -> int:
        return 7

    harness.start()
    inv = quick.send()
    assert inv.wait(timeout=WAIT) == 7
    harness.app.cancel(inv.invocation_id)
    time.sleep(0.3)
    assert harness.app.get_invocation(inv.invocation_id).wait(timeout=1) == 7
    assert all(e["e"] != "cancel" for e in journal(harness.app, inv.invocation_id))

