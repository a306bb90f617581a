"""Operating workflows through the app: the index, describe, retry and fork, on both pairs."""

from __future__ import annotations

import contextlib
import threading

import pytest

from dramatiq_encore import TaskError
from dramatiq_encore.errors import NotRetryable, UnknownWorkflow
from tests.conftest import Harness
from tests.support.waiting import wait_until

WAIT = 20


def _finished(app, workflow_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.describe(workflow_id).status)


def test_the_index_lists_workflows_newest_first_by_status_and_type_in_pages(scenario_harness: Harness) -> None:
    harness = scenario_harness  # memory, Redis, and Redis Cluster
    app = harness.app

    @app.task
    def ok(n: int) -> int:
        return n

    @app.task(max_retries=0)
    def boom(n: int) -> int:
        raise ValueError(f"boom {n}")

    harness.start()
    ids = []
    for n in range(5):
        task = ok if n % 2 == 0 else boom
        inv = task.send_with_options(args=(n,), workflow_id=f"wf-{n}")
        ids.append(inv.invocation_id)
        with contextlib.suppress(TaskError):
            inv.wait(timeout=WAIT)
    every = app.list_workflows(limit=50)
    assert [w.workflow_id for w in every.items] == ids[::-1] and every.cursor is None
    assert {w.workflow_id for w in app.list_workflows(status="failed").items} == {"wf-1", "wf-3"}
    assert {w.workflow_id for w in app.list_workflows(workflow_type=ok.name).items} == {"wf-0", "wf-2", "wf-4"}
    both = app.list_workflows(status="succeeded", workflow_type=boom.name)
    assert both.items == [] and both.cursor is None
    first = app.list_workflows(limit=2)
    second = app.list_workflows(limit=2, cursor=first.cursor)
    third = app.list_workflows(limit=2, cursor=second.cursor)
    assert [w.workflow_id for w in first.items + second.items + third.items] == ids[::-1]
    assert third.cursor is None
    summary = first.items[0]
    assert summary.type == ok.name and summary.status == "succeeded" and summary.finished_at is not None
    assert summary.started_at <= summary.finished_at
    assert app.count_workflows("failed") == 2 and app.count_workflows("suspended") == 0


def test_a_suspended_workflow_is_listed_as_suspended_then_as_finished(harness: Harness) -> None:
    app = harness.app

    @app.task
    def waits() -> str:
        return str(waits.wf.wait_for_signal("go"))

    harness.start()
    inv = waits.send_with_options(workflow_id="sleeper")
    assert wait_until(lambda: app.count_workflows("suspended") == 1, timeout=WAIT)
    assert [w.workflow_id for w in app.list_workflows(status="suspended").items] == ["sleeper"]
    app.signal("sleeper", "go", "now")
    assert inv.wait(timeout=WAIT) == "now"
    assert app.count_workflows("suspended") == 0
    assert [w.workflow_id for w in app.list_workflows(status="succeeded").items] == ["sleeper"]


def test_describe_gives_the_tree_with_every_step_its_values_and_data(harness: Harness) -> None:
    app = harness.app

    @app.task
    def charge(amount: int) -> str:
        return f"paid {amount}"

    @app.task(force_new_workflow=True)
    def ship(order: str) -> str:
        return str(ship.wf.execute_task(charge, 1).result) + " shipped " + order

    @app.task
    def order(order_id: str) -> str:
        wf = order.wf
        token = wf.uuid()
        wf.set_data("stage", "charging")
        paid = wf.execute_task(charge, 42).result
        wf.sleep(0.05)
        shipped = wf.execute_task(ship, order_id).result
        wf.set_data("stage", "done")
        return f"{paid}/{shipped}/{token}"

    harness.start()
    result = order.send_with_options(args=("A-1",), workflow_id="order-A-1").wait(timeout=WAIT)
    view = app.describe("order-A-1")
    assert view.workflow_id == "order-A-1" and view.type == order.name and view.status == "succeeded"
    assert view.result == result and view.error is None and view.data == {"stage": "done"}
    assert [(s.n, s.kind, s.task, s.status) for s in view.steps] == [
        (1, "task", charge.name, "succeeded"),
        (2, "timer", "sleep", "succeeded"),
        (3, "task", ship.name, "succeeded"),
    ]
    charge_step, timer, ship_step = view.steps
    assert charge_step.result == "paid 42" and charge_step.args == [42] and charge_step.attempts == 1
    assert charge_step.started_at is not None and charge_step.finished_at is not None
    assert charge_step.duration_s is not None and charge_step.duration_s >= 0
    assert timer.due_at is not None and timer.duration_s is not None and timer.duration_s >= 0.04
    assert ship_step.child is not None and ship_step.child.workflow_id == "order-A-1/3"
    assert [s.task for s in ship_step.child.steps] == [charge.name]
    assert [v.kind for v in view.values][:2] == ["uuid", "set_data"] and str(view.values[0].value) in result
    assert view.passes >= 4
    with pytest.raises(UnknownWorkflow, match="no start message ever named it"):
        app.describe("no-such-workflow")


def test_retry_resumes_a_failed_workflow_from_its_failed_step(scenario_harness: Harness) -> None:
    harness = scenario_harness  # memory, Redis, and Redis Cluster
    app = harness.app
    runs = {"prepare": 0, "charge": 0}
    broken = threading.Event()
    broken.set()

    @app.task
    def prepare() -> str:
        runs["prepare"] += 1
        return "prepared"

    @app.task(max_retries=0)
    def charge() -> str:
        runs["charge"] += 1
        if broken.is_set():
            raise ConnectionError("card processor down")
        return "charged"

    @app.task
    def order() -> str:
        wf = order.wf
        token = wf.uuid()
        prepared = wf.execute_task(prepare).result
        charged = wf.execute_task(charge).result
        return f"{prepared}/{charged}/{token}"

    harness.start()
    inv = order.send_with_options(workflow_id="order-R")
    with pytest.raises(TaskError, match="card processor down"):
        inv.wait(timeout=WAIT)
    token = app.describe("order-R").values[0].value
    broken.clear()
    assert app.retry("order-R") == 2
    assert wait_until(lambda: _finished(app, "order-R") == "succeeded", timeout=WAIT)
    assert app.get_invocation("order-R").result == f"prepared/charged/{token}"
    assert runs == {"prepare": 1, "charge": 2}
    view = app.describe("order-R")
    assert [s.task for s in view.steps] == [prepare.name, charge.name] and view.run == 1
    assert [w.status for w in app.list_workflows().items if w.workflow_id == "order-R"] == ["succeeded"]
    with pytest.raises(NotRetryable, match="only a failed workflow"):
        app.retry("order-R")


def test_fork_keeps_the_steps_before_and_runs_the_rest_again(scenario_harness: Harness) -> None:
    harness = scenario_harness  # memory, Redis, and Redis Cluster
    app = harness.app
    runs: list[str] = []

    @app.task
    def step(name: str) -> str:
        runs.append(name)
        return name.upper()

    @app.task
    def flow() -> list[str]:
        wf = flow.wf
        wf.set_data("seen", "a")
        out = [wf.execute_task(step, "a").result]
        wf.set_data("seen", "b")
        out.append(wf.execute_task(step, "b").result)
        out.append(wf.execute_task(step, "c").result)
        return out

    harness.start()
    assert flow.send_with_options(workflow_id="flow-1").wait(timeout=WAIT) == ["A", "B", "C"]
    new_id = app.fork("flow-1", 2, "flow-1-again")
    assert new_id == "flow-1-again"
    assert wait_until(lambda: _finished(app, new_id) == "succeeded", timeout=WAIT)
    assert app.get_invocation(new_id).result == ["A", "B", "C"]
    assert runs == ["a", "b", "c", "b", "c"]
    assert app.describe(new_id).data == {"seen": "b"}
    with pytest.raises(NotRetryable, match="exists already"):
        app.fork("flow-1", 2, "flow-1-again")
    with pytest.raises(NotRetryable, match="--from-step must be one of them"):
        app.fork("flow-1", 9)
