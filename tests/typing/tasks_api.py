"""Declaring tasks and starting them: ``@app.task`` keeps the signature, ``send`` returns ``Invocation[R]``."""

from __future__ import annotations

from typing import Any, TypedDict, assert_type

from dramatiq_encore import Encore, Invocation
from dramatiq_encore.actors.task import Task

app = Encore()


class Receipt(TypedDict):
    order_id: str
    cents: int


@app.task
def place_order(order_id: str, amount: float = 0.0) -> dict[str, str]:
    return {"order_id": order_id}


@app.task(queue_name="payments", max_retries=5, priority=1)
def charge(order_id: str, cents: int, /) -> Receipt:
    return {"order_id": order_id, "cents": cents}


@app.task(force_new_workflow=True)
def audit(order_id: str, /) -> int:
    return len(order_id)


@app.task
async def fetch(url: str, /) -> bytes:
    return url.encode()


# -- what the decorators give ------------------------------------------------------------
assert_type(charge, Task[[str, int], Receipt])
assert_type(audit, Task[[str], int])
assert_type(fetch, Task[[str], bytes])  # an async def task's result is what it awaits to
named: Task[[str, float], dict[str, str]] = place_order
assert_type(place_order("A-1", 2.5), dict[str, str])  # calling the task calls the plain function
app.task(force_new_workflow="yes")  # type: ignore[call-overload]
app.task(actor_name=7)  # type: ignore[call-overload]

# -- send --------------------------------------------------------------------------------
order = place_order.send("A-1", amount=2.5)
assert_type(order, Invocation[dict[str, str]])
assert_type(order.wait(timeout=5), dict[str, str])
assert_type(order.result, dict[str, str])
assert_type(order.status, str)
assert_type(charge.send("A-1", 250), Invocation[Receipt])
assert_type(fetch.send("https://example.org").wait(), bytes)
place_order.send(42)  # type: ignore[arg-type]
place_order.send("A-1", amount="cheap")  # type: ignore[arg-type]
place_order.send()  # type: ignore[call-arg]
place_order.send("A-1", 2.5, "extra")  # type: ignore[call-arg]
place_order.send("A-1", discount=0.1)  # type: ignore[call-arg]
charge.send("A-1", "250")  # type: ignore[arg-type]
audit.send(order_id="A-1")  # type: ignore[call-arg]

# -- send_with_options: the arguments travel as a tuple and a dict, the result stays typed -
again = place_order.send_with_options(args=("A-1",), kwargs={"amount": 1.0}, workflow_id="order-A-1", delay=10)
assert_type(again, Invocation[dict[str, str]])
assert_type(audit.send_with_options(args=["A-1"]).wait(), int)
place_order.send_with_options(args=("A-1",), workflow_id=1)  # type: ignore[arg-type]
place_order.send_with_options("A-1")  # type: ignore[call-arg, arg-type]

# -- handles by id -------------------------------------------------------------------------
assert_type(app.get_invocation("order-A-1"), Invocation[Any])
assert_type(app.get_invocation("order-A-1").wait(), Any)
stored: Invocation[object] = order  # Invocation is covariant in its result type
