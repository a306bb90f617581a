"""An order workflow: a tracking code from wf.random(), a payment step, a reminder time.

Run it with no servers (embedded mode)::

    python examples/order_processing/run.py

With ENCORE_BROKER_URL and ENCORE_STATE_URL set, start workers first
(``encore worker examples.order_processing.run``), then run the same command.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from dramatiq_encore import Encore

app = Encore()


@app.task(force_new_workflow=True)
def handle_order(order_id: str) -> dict[str, Any]:
    """The workflow: every wf.* value below is recorded once and replayed after each step."""
    tracking_code = make_tracking_code(order_id)
    # The workflow suspends here until the payment task has run, then replays from the top:
    # make_tracking_code() returns the same code on the replay.
    payment = handle_order.wf.execute_task(take_payment, order_id)
    remind_at = handle_order.wf.utc_now() + timedelta(hours=1)
    handle_order.wf.set_data("tracking_code", tracking_code)
    handle_order.wf.set_data("remind_at", remind_at.isoformat())
    return {
        "order_id": order_id,
        "tracking_code": tracking_code,
        "payment": payment.result,
        "remind_at": remind_at.isoformat(),
    }


def make_tracking_code(order_id: str) -> str:
    """A plain helper: `handle_order.wf` is the context of whichever task runs this thread."""
    suffix = int(handle_order.wf.random() * 100_000)
    return f"TRK-{order_id}-{suffix:05d}"


@app.task
def take_payment(order_id: str) -> dict[str, Any]:
    """A step: it joins the caller's workflow and has its own deterministic values."""
    return {
        "payment_id": take_payment.wf.uuid(),
        "charged_at": take_payment.wf.utc_now().isoformat(),
        "status": "captured",
    }


def main() -> None:
    invocation = handle_order.send("ORD-7731")
    result = invocation.wait(timeout=60)
    workflow_id = invocation.workflow.workflow_id
    print("result:", json.dumps(result, indent=2))
    print("status:", invocation.status)
    print("workflow data:", json.dumps(app.get_workflow_data(workflow_id), indent=2))
    app.close()


if __name__ == "__main__":
    main()
