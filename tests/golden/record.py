"""Record the golden histories of the reference scenarios: ``python -m tests.golden.record``.

Each scenario's workflow runs embedded (stub broker, in-memory state) with the example's own
code, and ``app.export`` writes its history next to this file. ``order_processing_v0.json``
is recorded by an older version of the order workflow (it charged a deposit first), so it
must diverge from today's code (tests/test_golden_histories.py). Run again only when a
scenario's code changes on purpose.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from dramatiq_encore import Encore
from dramatiq_encore.state import MemoryState

HERE = Path(__file__).parent

#: scenario -> (task, args); each is started under the workflow id ``golden-<scenario>``.
SCENARIOS: dict[str, tuple[str, list[Any]]] = {
    "order_processing": ("handle_order", ["ORD-7731"]),
    "deterministic_operations": ("raffle_draw", ["spring-fair"]),
    "chained_tasks": ("ingest_station", ["north-ridge", {" Temp ": 11.5, "Humidity": 71, "WIND": 4.2}]),
    "fan_out": ("best_offer", ["BOLT-M8", 500]),
    "state_management": ("migrate_account", ["ACC-311"]),
    "workflow_boundaries": ("nightly_import", [{"source": "crm-export", "rows": [101, 102, 103]}]),
    "error_handling": (
        "dispatch_order",
        [{"order_id": "ORD-502", "amount": 640.0, "lines": [{"sku": "desk", "quantity": 3}]}],
    ),
    "signals": ("review_article", ["A-100"]),
}


def record(scenario: str) -> None:
    module = importlib.import_module(f"examples.{scenario}.run")
    app: Encore = module.app
    task_name, args = SCENARIOS[scenario]
    workflow_id = f"golden-{scenario.replace('_', '-')}"
    invocation = app.tasks[task_name].send_with_options(args=args, workflow_id=workflow_id)
    if scenario == "signals":
        while app.get_workflow_data(workflow_id).get("stage") != "in review":
            time.sleep(0.01)
        app.signal(workflow_id, "decision", {"approve": True, "by": "ada"})
    invocation.wait(timeout=60)
    (HERE / f"{scenario}.json").write_text(app.export(workflow_id).model_dump_json(indent=2) + "\n")


def record_old_order_workflow() -> None:
    """The order workflow as version 0 had it: a deposit step before the payment."""
    app = Encore(broker=StubBroker(), state=MemoryState())

    @app.task
    def take_payment(order_id: str, amount: float = 0.0) -> dict[str, Any]:
        return {"payment_id": str(take_payment.wf.uuid()), "status": "captured", "amount": amount}

    @app.task(force_new_workflow=True)
    def handle_order(order_id: str) -> dict[str, Any]:
        deposit = handle_order.wf.execute_task(take_payment, order_id, 10.0)
        return {"order_id": order_id, "deposit": deposit.result}

    worker = dramatiq.Worker(app.broker, worker_threads=2)
    worker.start()
    handle_order.send_with_options(args=("ORD-7731",), workflow_id="golden-order-v0").wait(timeout=60)
    (HERE / "order_processing_v0.json").write_text(app.export("golden-order-v0").model_dump_json(indent=2) + "\n")
    worker.stop()
    app.close()


if __name__ == "__main__":
    assert not any(key.startswith("ENCORE_") for key in os.environ), "record embedded: unset ENCORE_*"
    for name in SCENARIOS:
        record(name)
    record_old_order_workflow()
