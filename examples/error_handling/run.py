"""Error handling: a step fails, the workflow catches it, records why and cleans up.

A failed step raises ``TaskError`` at its ``execute_task`` call, on the first run and
on every replay. ``except Exception`` catches it (the engine's own suspension is a
``BaseException``, so a broad ``except Exception`` never swallows it).

    python examples/error_handling/run.py
"""

from __future__ import annotations

import json
from typing import Any

from dramatiq_encore import Encore, TaskError

app = Encore()

STOCK = {"lamp": 5, "desk": 1}


class OutOfStock(Exception):
    """A business outcome, not a transient fault: retrying will not help."""


@app.task
def check_order(order: dict[str, Any]) -> dict[str, Any]:
    problems = [] if order.get("lines") else ["order has no lines"]
    return {"check_id": check_order.wf.uuid(), "ok": not problems, "problems": problems}


@app.task
def authorise_card(order: dict[str, Any]) -> dict[str, Any]:
    return {"authorisation_id": authorise_card.wf.uuid(), "amount": order["amount"]}


# throws=: a dramatiq option; the expected error fails the step at once instead of being
# retried three times with backoff (the default for other errors).
@app.task(throws=(OutOfStock,))
def hold_stock(order: dict[str, Any]) -> dict[str, Any]:
    for line in order["lines"]:
        available = STOCK.get(line["sku"], 0)
        if line["quantity"] > available:
            raise OutOfStock(f"{line['sku']}: {line['quantity']} requested, {available} available")
    return {"hold_id": hold_stock.wf.uuid(), "lines": len(order["lines"])}


@app.task
def book_courier(order_id: str, hold_id: str) -> dict[str, Any]:
    return {"consignment": f"CN-{order_id}-{int(book_courier.wf.random() * 10_000):04d}", "hold_id": hold_id}


@app.task
def undo_order(order_id: str, reason: str) -> dict[str, Any]:
    """Compensation: void the card authorisation and release whatever was held."""
    return {"undo_id": undo_order.wf.uuid(), "order_id": order_id, "actions": ["void_authorisation", "release_stock"]}


@app.task
def dispatch_order(order: dict[str, Any]) -> dict[str, Any]:
    wf = dispatch_order.wf
    order_id = order["order_id"]
    started = wf.utc_now()
    wf.set_data("status", "processing")
    try:
        check = wf.execute_task(check_order, order).result
        if not check["ok"]:
            wf.set_data("status", "rejected")
            return {"order_id": order_id, "status": "rejected", "problems": check["problems"]}
        card = wf.execute_task(authorise_card, order).result
        hold = wf.execute_task(hold_stock, order).result
        courier = wf.execute_task(book_courier, order_id, hold["hold_id"]).result
    except Exception as exc:
        error_type = exc.error_type if isinstance(exc, TaskError) else type(exc).__name__
        wf.set_data("status", "error")
        wf.set_data("error", str(exc))
        undo = wf.execute_task(undo_order, order_id, str(exc)).result
        return {"order_id": order_id, "status": "error", "error_type": error_type, "error": str(exc), "undo": undo}
    wf.set_data("status", "dispatched")
    finished = wf.utc_now()
    return {
        "order_id": order_id,
        "status": "dispatched",
        "authorisation_id": card["authorisation_id"],
        "consignment": courier["consignment"],
        "seconds": (finished - started).total_seconds(),
    }


def main() -> None:
    orders = [
        {"order_id": "ORD-501", "amount": 80.0, "lines": [{"sku": "lamp", "quantity": 2}]},
        {"order_id": "ORD-502", "amount": 640.0, "lines": [{"sku": "desk", "quantity": 3}]},
    ]
    for invocation in [dispatch_order.send(order) for order in orders]:
        result = invocation.wait(timeout=60)
        print(json.dumps(result, indent=2))
        print("workflow data:", json.dumps(app.get_workflow_data(invocation.workflow.workflow_id)))
    app.close()


if __name__ == "__main__":
    main()
