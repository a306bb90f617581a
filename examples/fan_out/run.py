"""Fan-out / fan-in: ask every supplier for a quote in parallel, then pick the best one.

``wf.start_task`` starts a step without waiting; ``wf.gather`` waits for all of them.
Every child of one pass is dispatched at once, and the workflow resumes once, when the
last one has answered. A supplier that fails does not hide the others' answers:
``gather(..., return_exceptions=True)`` returns a ``TaskError`` in its place.

    python examples/fan_out/run.py
"""

from __future__ import annotations

import json
from typing import Any

from dramatiq_encore import Encore, TaskError

app = Encore()

SUPPLIERS = {"acme": 1.00, "globex": 0.94, "initech": 1.07, "umbrella": None}  # None: offline


class SupplierDown(Exception):
    """The supplier did not answer; retrying in this demo would not help."""


@app.task(throws=(SupplierDown,))
def request_quote(supplier: str, sku: str, quantity: int) -> dict[str, Any]:
    factor = SUPPLIERS[supplier]
    if factor is None:
        raise SupplierDown(f"{supplier} is offline")
    return {"supplier": supplier, "unit_price": round(12.5 * factor, 2), "quantity": quantity}


@app.task
def reserve_budget(sku: str, amount: float) -> str:
    return f"BUD-{sku}-{reserve_budget.wf.uuid()[:8]}"


@app.task
def notify_buyer(sku: str, supplier: str) -> str:
    return f"buyer told: {sku} from {supplier}"


@app.task
def best_offer(sku: str, quantity: int) -> dict[str, Any]:
    """The workflow: one step per supplier, all in flight together."""
    wf = best_offer.wf
    handles = [wf.start_task(request_quote, name, sku, quantity) for name in SUPPLIERS]
    answers = dict(zip(SUPPLIERS, wf.gather(*handles, return_exceptions=True), strict=True))
    quotes = [answer.result for answer in answers.values() if not isinstance(answer, TaskError)]
    failed = {name: answer.message for name, answer in answers.items() if isinstance(answer, TaskError)}
    best = min(quotes, key=lambda quote: quote["unit_price"])
    # execute_tasks: start several steps and wait for all of them in one call.
    budget, notice = wf.execute_tasks(
        [(reserve_budget, sku, best["unit_price"] * quantity), (notify_buyer, sku, best["supplier"])]
    )
    return {
        "sku": sku,
        "quotes": len(quotes),
        "failed": failed,
        "best": best,
        "budget": budget.result,
        "notice": notice.result,
    }


def main() -> None:
    offer = best_offer.send("BOLT-M8", 500)
    result = offer.wait(timeout=60)
    print(json.dumps(result, indent=2))
    print(f"best supplier: {result['best']['supplier']}")
    app.close()


if __name__ == "__main__":
    main()
