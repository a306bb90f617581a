"""Async tasks: ``async def`` activities awaiting I/O, and a workflow that is a coroutine too.

An ``@app.task`` on an ``async def`` runs on the event loop of dramatiq's ``AsyncIO``
middleware (``Encore`` adds it to the broker with the first async task). ``check_stock``
awaits its "I/O" there, beside the others: the three checks of one gather overlap. The
workflow ``restock`` is a coroutine as well; its ``wf.*`` calls replay exactly as in a
``def`` workflow, and ``wf.execute_task`` suspends it the same way (no coroutine is left
waiting: the pass ends, and the next one runs the coroutine again from the top).

    python examples/async_tasks/run.py
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from dramatiq_encore import Encore

app = Encore()

WAREHOUSES = {"north": 12, "south": 0, "east": 5}
IN_FLIGHT = {"now": 0, "most": 0}  # stock checks awaiting at the same time (one loop: no lock needed)


@app.task
async def check_stock(warehouse: str, sku: str) -> dict[str, Any]:
    """An activity: awaits a (simulated) HTTP call; no wf.* needed."""
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    await asyncio.sleep(0.5)
    IN_FLIGHT["now"] -= 1
    return {"warehouse": warehouse, "sku": sku, "available": WAREHOUSES[warehouse]}


@app.task
def price_of(sku: str, quantity: int) -> float:
    """A plain def child, called from the async workflow like any other."""
    return round(quantity * 2.35, 2)


@app.task
async def restock(sku: str, quantity: int) -> dict[str, Any]:
    """The workflow: an async def whose wf.* calls are recorded and replayed."""
    wf = restock.wf
    order_no = f"PO-{int(wf.random() * 100_000):05d}"
    started = wf.utc_now()
    handles = [wf.start_task(check_stock, name, sku) for name in WAREHOUSES]
    stock = [handle.result for handle in wf.gather(*handles)]
    source = max(stock, key=lambda row: row["available"])
    await asyncio.sleep(0)  # any awaitable between wf calls: the workflow's own task awaits it
    cost = wf.execute_task(price_of, sku, quantity).result
    wf.set_data("order_no", order_no)
    return {
        "order_no": order_no,
        "source": source["warehouse"],
        "checked": len(stock),
        "cost": cost,
        "started": started.isoformat(),
    }


def main() -> None:
    inv = restock.send("BOLT-M8", 40)
    result = inv.wait(timeout=60)
    print(json.dumps(result, indent=2))
    print(f"stock checks overlapped on the event loop: {IN_FLIGHT['most'] > 1}")
    print("order_no stored:", app.get_workflow_data(inv.invocation_id)["order_no"] == result["order_no"])
    app.close()


if __name__ == "__main__":
    main()
