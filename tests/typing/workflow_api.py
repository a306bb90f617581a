"""The ``wf`` operations: steps checked against the child task's parameters, results typed."""

from __future__ import annotations

import datetime as dt
from typing import Any, NoReturn, TypedDict, assert_type

from dramatiq_encore import Encore, Invocation, TaskError, WorkflowIdentity
from dramatiq_encore.actors.context import StepHandle, WorkflowContext

app = Encore()


class Receipt(TypedDict):
    order_id: str
    cents: int


@app.task
def charge(order_id: str, cents: int) -> Receipt:
    return {"order_id": order_id, "cents": cents}


@app.task
def reserve(order_id: str, skus: list[str]) -> bool:
    return bool(skus)


@app.task(force_new_workflow=True)
def ship(order_id: str) -> str:
    return f"T-{order_id}"


@app.task
async def fetch_rate(currency: str) -> float:
    return 1.0


def not_a_task(order_id: str) -> None:
    """A plain function: only tasks can be steps."""


@app.task
def fulfil(order_id: str) -> dict[str, Any]:
    wf = fulfil.wf
    assert_type(wf, WorkflowContext)
    assert_type(fulfil.workflow, WorkflowIdentity)

    # -- execute_task -------------------------------------------------------------------
    payment = wf.execute_task(charge, order_id, 250)
    assert_type(payment, Invocation[Receipt])
    assert_type(payment.result, Receipt)
    assert_type(payment.wait(), Receipt)
    assert_type(payment.result["cents"], int)
    assert_type(wf.execute_task(charge, order_id, cents=250).result, Receipt)
    assert_type(wf.execute_task(ship, order_id).result, str)  # a force_new_workflow child
    assert_type(wf.execute_task(fetch_rate, "EUR").result, float)  # an async def child
    wf.execute_task(charge, order_id)  # type: ignore[call-arg]
    wf.execute_task(charge, order_id, 250, 1)  # type: ignore[call-arg]
    wf.execute_task(charge, order_id, "250")  # type: ignore[arg-type]
    wf.execute_task(charge, order_id, amount=250)  # type: ignore[call-arg]
    wf.execute_task(ship, 42)  # type: ignore[arg-type]
    wf.execute_task(not_a_task, order_id)  # type: ignore[arg-type]

    # -- execute_task_with_options: arguments as a tuple, the result stays typed ---------
    timed = wf.execute_task_with_options(charge, args=(order_id, 250), timeout=dt.timedelta(seconds=30))
    assert_type(timed, Invocation[Receipt])
    assert_type(wf.execute_tasks([(charge, order_id, 1), (ship, order_id)]), list[Invocation[Any]])

    # -- start_task and gather ---------------------------------------------------------
    paying = wf.start_task(charge, order_id, 250)
    holding = wf.start_task(reserve, order_id, ["A-7"])
    shipping = wf.start_task(ship, order_id)
    assert_type(paying, StepHandle[Receipt])
    assert_type(holding, StepHandle[bool])
    wf.start_task(reserve, order_id, "A-7")  # type: ignore[arg-type]
    wf.start_task(ship)  # type: ignore[call-arg]
    assert_type(wf.gather(paying), list[Invocation[Receipt]])
    assert_type(wf.gather(paying, paying), list[Invocation[Receipt]])
    assert_type(wf.gather(paying, holding), list[Invocation[Receipt] | Invocation[bool]])
    assert_type(wf.gather(paying, holding, shipping), list[Invocation[Receipt] | Invocation[bool] | Invocation[str]])
    resizes = [wf.start_task(ship, f"{order_id}-{i}") for i in range(3)]
    assert_type(wf.gather(*resizes), list[Invocation[str]])
    assert_type([inv.result for inv in wf.gather(*resizes)], list[str])
    assert_type(wf.gather(paying, return_exceptions=True), list[Invocation[Receipt] | TaskError])
    wf.gather(paying, payment)  # type: ignore[call-overload]

    # -- deterministic values, data, timers, signals, versioning ------------------------
    assert_type(wf.random(), float)
    assert_type(wf.uuid(), str)
    assert_type(wf.utc_now(), dt.datetime)
    assert_type(wf.side_effect("roll", lambda: 4), int)
    assert_type(wf.deterministic._deterministic_operation("pick", lambda: "a"), str)
    assert_type(wf.set_data("stage", "charged"), None)
    assert_type(wf.get_data("stage"), Any)  # workflow data is any JSON value
    assert_type(wf.get_data("stage", "new"), Any)
    assert_type(wf.sleep(dt.timedelta(hours=1)), None)
    assert_type(wf.wait_for_signal("approval", timeout=60.0), Any)  # a signal's payload is any JSON value
    assert_type(wf.patched("send-receipt"), bool)
    assert_type(wf.replaying, bool)
    wf.sleep("1h")  # type: ignore[arg-type]
    wf.random(1)  # type: ignore[call-arg]
    return {"payment": payment.result, "rate": wf.execute_task(fetch_rate, "EUR").result}


@app.task
def poll(cursor: int) -> None:
    wf = poll.wf
    assert_type(wf.continue_as_new(cursor + 1), NoReturn)
