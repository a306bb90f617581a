"""The six reference scenarios: the workflow shapes the public API is checked against.

Order processing, workflow boundaries, deterministic operations, state management,
chained tasks and error handling (``examples/`` has a runnable copy of each). Each is
rebuilt with the same task names and the same shape of results as its example, on every
backend pair of the ``harness``, and checked for what the scenario promises: the results'
shape, valid version-4 uuids, distinct child workflows, real increasing timestamps and
workflow data readable from outside with ``app.get_workflow_data``.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid
from typing import Any

import pytest

from dramatiq_encore import Encore
from tests.conftest import Harness

WAIT = 15.0
UTC = dt.UTC



@pytest.fixture
def harness(scenario_harness: Harness) -> Harness:
    """The reference scenarios run on memory, on RabbitMQ + Redis, and on a 3-node Redis Cluster."""
    return scenario_harness


def is_uuid4(text: str) -> bool:
    value = uuid.UUID(text)
    return value.version == 4 and value.variant == uuid.RFC_4122 and str(value) == text


def parse(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    assert value.utcoffset() == dt.timedelta(0), text
    return value


def near_now(value: dt.datetime, before: dt.datetime) -> bool:
    return before <= value <= dt.datetime.now(UTC)


# -- basic order workflow -----------------------------------------------------------------


def declare_order_scenario(app: Encore) -> Any:
    @app.task
    def process_payment(order_id: str) -> dict[str, Any]:
        return {
            "payment_id": process_payment.wf.uuid(),
            "processed_at": process_payment.wf.utc_now().isoformat(),
            "status": "completed",
        }

    def tracking_number_for(order_id: str) -> str:
        # A plain helper: it reaches the running workflow through the task object
        suffix = int(process_order_workflow.wf.random() * 100_000)
        return f"TRK-{order_id}-{suffix:05d}"

    @app.task(force_new_workflow=True)
    def process_order_workflow(order_id: str) -> dict[str, Any]:
        wf = process_order_workflow.wf
        tracking = tracking_number_for(order_id)
        payment = wf.execute_task(process_payment, order_id)
        notify_at = wf.utc_now() + dt.timedelta(hours=1)
        wf.set_data("tracking_number", tracking)
        wf.set_data("notification_time", notify_at.isoformat())
        return {
            "order_id": order_id,
            "tracking_number": tracking,
            "payment_status": payment.result,
            "notification_scheduled": notify_at.isoformat(),
        }

    return process_order_workflow


def test_basic_order_workflow(harness: Harness) -> None:
    app = harness.app
    process_order_workflow = declare_order_scenario(app)
    harness.start()

    before = dt.datetime.now(UTC)
    inv = process_order_workflow.send("A-1")
    result = inv.wait(timeout=WAIT)

    assert set(result) == {"order_id", "tracking_number", "payment_status", "notification_scheduled"}
    assert result["order_id"] == "A-1"
    assert re.fullmatch(r"TRK-A-1-\d{5}", result["tracking_number"])
    payment = result["payment_status"]
    assert payment["status"] == "completed" and is_uuid4(payment["payment_id"])
    processed_at = parse(payment["processed_at"])
    assert near_now(processed_at, before)
    scheduled = parse(result["notification_scheduled"])
    assert dt.timedelta(hours=1) <= scheduled - processed_at < dt.timedelta(hours=1, seconds=WAIT)
    assert app.get_workflow_data(inv.workflow.workflow_id) == {
        "tracking_number": result["tracking_number"],
        "notification_time": result["notification_scheduled"],
    }


# -- workflow boundaries --------------------------------------------------------------------


def test_workflow_boundaries(harness: Harness) -> None:
    app = harness.app

    @app.task(force_new_workflow=True)
    def independent_workflow(data: dict[str, Any]) -> dict[str, Any]:
        wf = independent_workflow.wf
        return {
            "workflow_id": independent_workflow.workflow.workflow_id,
            "unique_value": wf.random(),
            "timestamp": wf.utc_now().isoformat(),
            "data": data,
        }

    @app.task
    def call_independent_workflow(input_data: dict[str, Any]) -> dict[str, Any]:
        own_id = call_independent_workflow.workflow.workflow_id
        child = call_independent_workflow.wf.execute_task(independent_workflow, input_data)
        child_id = child.workflow.workflow_id
        return {
            "parent_workflow_id": own_id,
            "child_workflow_id": child_id,
            "child_result": child.result,
            "workflows_are_different": own_id != child_id,
        }

    harness.start()
    payload = {"customer": "C-9", "items": [1, 2]}
    first = call_independent_workflow.send(payload)
    second = call_independent_workflow.send(payload)
    a, b = first.wait(timeout=WAIT), second.wait(timeout=WAIT)

    for handle, result in ((first, a), (second, b)):
        assert result["parent_workflow_id"] == handle.invocation_id
        assert result["workflows_are_different"] is True
        assert result["child_result"]["workflow_id"] == result["child_workflow_id"]
        assert result["child_result"]["data"] == payload
        assert 0 <= result["child_result"]["unique_value"] < 1
        child = app.get_invocation(result["child_workflow_id"]).workflow
        assert child.parent_workflow_id == child.root_workflow_id == handle.invocation_id
        assert child.workflow_type == "independent_workflow"
    assert len({a["child_workflow_id"], b["child_workflow_id"], a["parent_workflow_id"], b["parent_workflow_id"]}) == 4
    assert a["child_result"]["unique_value"] != b["child_result"]["unique_value"]


# -- deterministic operations, including a custom one ---------------------------------------


def test_deterministic_operations_with_a_custom_operation(harness: Harness) -> None:
    app = harness.app
    custom_calls: list[int] = []

    def pick_sequence_number() -> int:
        number = random.randint(1000, 9999)
        custom_calls.append(number)
        return number

    @app.task
    def nap() -> None:
        return None

    @app.task
    def deterministic_operations_example() -> dict[str, Any]:
        wf = deterministic_operations_example.wf
        start = wf.utc_now()
        values = {
            "random_value": wf.random(),
            "unique_id": wf.uuid(),
            "start_time": start.isoformat(),
            "later_time": wf.utc_now().isoformat(),
            "sequence_number": wf.deterministic._deterministic_operation("sequence", pick_sequence_number),
        }
        wf.execute_task(nap)  # a replay follows: every value above must come back unchanged
        return values

    harness.start()
    before = dt.datetime.now(UTC)
    result = deterministic_operations_example.send().wait(timeout=WAIT)

    assert 0 <= result["random_value"] < 1
    assert is_uuid4(result["unique_id"])
    start, later = parse(result["start_time"]), parse(result["later_time"])
    assert near_now(start, before) and start < later
    assert 1000 <= result["sequence_number"] <= 9999
    assert custom_calls == [result["sequence_number"]]  # ran once, replayed from the record


# -- state management -----------------------------------------------------------------------


def test_state_management(harness: Harness) -> None:
    app = harness.app

    @app.task
    def stateful_workflow(user_id: str) -> dict[str, Any]:
        wf = stateful_workflow.wf
        wf.set_data("user_id", user_id)
        wf.set_data("started_at", wf.utc_now().isoformat())
        steps = []
        for number in (1, 2, 3):
            step_id = wf.uuid()
            steps.append({"step": number, "step_id": step_id, "timestamp": wf.utc_now().isoformat()})
            wf.set_data(f"step_{number}_result", step_id)
        return {
            "user_id": wf.get_data("user_id"),
            "started_at": wf.get_data("started_at"),
            "processing_steps": steps,
            "completed_at": wf.utc_now().isoformat(),
        }

    harness.start()
    inv = stateful_workflow.send("U-42")
    result = inv.wait(timeout=WAIT)

    steps = result["processing_steps"]
    assert result["user_id"] == "U-42"
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all(is_uuid4(s["step_id"]) for s in steps) and len({s["step_id"] for s in steps}) == 3
    times = [result["started_at"], *(s["timestamp"] for s in steps), result["completed_at"]]
    assert [parse(t) for t in times] == sorted(parse(t) for t in times) and len(set(times)) == 5
    assert app.get_workflow_data(inv.workflow.workflow_id) == {
        "user_id": "U-42",
        "started_at": result["started_at"],
        **{f"step_{s['step']}_result": s["step_id"] for s in steps},
    }


# -- chained child tasks --------------------------------------------------------------------


def declare_chain_scenario(app: Encore) -> Any:
    @app.task
    def validate_data(data: dict[str, Any]) -> dict[str, Any]:
        normalized = {key.lower(): value for key, value in data.items()}
        return {
            "valid": bool(normalized),
            "normalized_data": normalized,
            "validated_at": validate_data.wf.utc_now().isoformat(),
        }

    @app.task
    def process_data(original_data: dict[str, Any], normalized_data: dict[str, Any]) -> dict[str, Any]:
        return {
            "processing_id": process_data.wf.uuid(),
            "processed_records": len(normalized_data),
            "processed_at": process_data.wf.utc_now().isoformat(),
        }

    @app.task
    def send_notification(processing_result: dict[str, Any]) -> dict[str, Any]:
        return {
            "notification_id": send_notification.wf.uuid(),
            "sent_at": send_notification.wf.utc_now().isoformat(),
            "processing_id": processing_result["processing_id"],
        }

    @app.task
    def parent_workflow(data: dict[str, Any]) -> dict[str, Any]:
        wf = parent_workflow.wf
        validation = wf.execute_task(validate_data, data).result
        if not validation["valid"]:
            return {"status": "failed", "validation": validation, "error": "Data validation failed"}
        processing = wf.execute_task(process_data, data, validation["normalized_data"]).result
        notification = wf.execute_task(send_notification, processing).result
        return {"status": "completed", "validation": validation, "processing": processing, "notification": notification}

    return parent_workflow


def test_chained_child_tasks(harness: Harness) -> None:
    app = harness.app
    parent_workflow = declare_chain_scenario(app)
    harness.start()

    inv = parent_workflow.send({"Name": "Ada", "CITY": "London"})
    result = inv.wait(timeout=WAIT)

    assert result["status"] == "completed"
    assert result["validation"]["normalized_data"] == {"name": "Ada", "city": "London"}
    processing, notification = result["processing"], result["notification"]
    assert processing["processed_records"] == 2 and is_uuid4(processing["processing_id"])
    assert is_uuid4(notification["notification_id"])
    assert notification["processing_id"] == processing["processing_id"]
    assert notification["notification_id"] != processing["processing_id"]  # each child has its own stream
    stamps = [result["validation"]["validated_at"], processing["processed_at"], notification["sent_at"]]
    assert [parse(s) for s in stamps] == sorted(parse(s) for s in stamps)  # the chain ran in order, real time
    for step in (1, 2, 3):
        assert app.get_invocation(f"{inv.invocation_id}/{step}").workflow.workflow_id == inv.invocation_id


def test_chained_child_tasks_stop_when_validation_fails(harness: Harness) -> None:
    app = harness.app
    parent_workflow = declare_chain_scenario(app)
    harness.start()

    inv = parent_workflow.send({})
    result = inv.wait(timeout=WAIT)

    assert result["status"] == "failed" and result["error"] == "Data validation failed"
    assert result["validation"]["valid"] is False
    assert app.get_invocation(f"{inv.invocation_id}/2").status == "pending"  # never started


# -- error handling with cleanup ------------------------------------------------------------


def declare_robust_scenario(app: Encore) -> Any:
    @app.task
    def validate_order(order_data: dict[str, Any]) -> dict[str, Any]:
        errors = [
            message
            for field, message in (("customer_id", "Missing customer_id"), ("items", "No items in order"))
            if not order_data.get(field)
        ]
        return {
            "validation_id": validate_order.wf.uuid(),
            "valid": not errors,
            "errors": errors,
            "validated_at": validate_order.wf.utc_now().isoformat(),
        }

    @app.task
    def process_payment_with_retry(order_data: dict[str, Any]) -> dict[str, Any]:
        wf = process_payment_with_retry.wf
        payment_id, attempted_at = wf.uuid(), wf.utc_now().isoformat()
        if wf.random() > 0.1:
            return {"payment_id": payment_id, "status": "completed", "amount": order_data.get("total", 0),
                    "processed_at": attempted_at}
        return {"payment_id": payment_id, "status": "failed", "error": "Payment processing failed",
                "attempted_at": attempted_at}

    @app.task(max_retries=0)
    def reserve_inventory(order_data: dict[str, Any]) -> dict[str, Any]:
        wf = reserve_inventory.wf
        reservation_id, reserved_at = wf.uuid(), wf.utc_now().isoformat()
        lines = []
        for item in order_data.get("items", []):
            if item.get("quantity", 0) <= 0:
                raise ValueError(f"cannot reserve {item.get('quantity')} of {item.get('id')}")
            lines.append({"item_id": item.get("id"), "quantity": item.get("quantity"), "reservation_id": wf.uuid()})
        return {"reservation_id": reservation_id, "reserved_items": lines, "reserved_at": reserved_at}

    @app.task
    def generate_shipping_label(order_id: str, inventory_data: dict[str, Any]) -> dict[str, Any]:
        wf = generate_shipping_label.wf
        return {
            "label_id": wf.uuid(),
            "tracking_number": f"TRK-{order_id}-{int(wf.random() * 100_000):05d}",
            "order_id": order_id,
            "reservation_id": inventory_data["reservation_id"],
            "generated_at": wf.utc_now().isoformat(),
        }

    @app.task
    def cleanup_failed_order(order_id: str) -> dict[str, Any]:
        return {
            "cleanup_id": cleanup_failed_order.wf.uuid(),
            "order_id": order_id,
            "actions": ["released_inventory", "voided_payment", "notified_customer"],
            "cleaned_at": cleanup_failed_order.wf.utc_now().isoformat(),
        }

    @app.task
    def robust_processing_workflow(order_data: dict[str, Any]) -> dict[str, Any]:
        wf = robust_processing_workflow.wf
        began = wf.utc_now()
        order_id = order_data.get("order_id") or wf.uuid()
        wf.set_data("order_id", order_id)
        wf.set_data("started_at", began.isoformat())
        wf.set_data("status", "processing")
        try:
            validation = wf.execute_task(validate_order, order_data).result
            if not validation["valid"]:
                wf.set_data("status", "validation_failed")
                return {"order_id": order_id, "status": "failed", "step": "validation", "error": validation["errors"]}
            payment = wf.execute_task(process_payment_with_retry, order_data).result
            wf.set_data("payment_id", payment["payment_id"])
            inventory = wf.execute_task(reserve_inventory, order_data).result
            wf.set_data("reservation_id", inventory["reservation_id"])
            label = wf.execute_task(generate_shipping_label, order_id, inventory).result
            wf.set_data("status", "completed")
            ended = wf.utc_now()
            return {
                "order_id": order_id,
                "status": "completed",
                "payment_id": payment["payment_id"],
                "reservation_id": inventory["reservation_id"],
                "tracking_number": label["tracking_number"],
                "started_at": began.isoformat(),
                "completed_at": ended.isoformat(),
                "processing_time_seconds": (ended - began).total_seconds(),
            }
        except Exception as e:  # the engine's suspension is a BaseException and passes through
            wf.set_data("status", "error")
            wf.set_data("error", str(e))
            cleanup = wf.execute_task(cleanup_failed_order, order_id)
            return {"order_id": order_id, "status": "error", "error": str(e), "cleanup_result": cleanup.result}

    return robust_processing_workflow


GOOD_ORDER = {"order_id": "O-7", "customer_id": "C-1", "total": 42.5, "items": [{"id": "sku-1", "quantity": 2}]}


def test_error_handling_happy_path(harness: Harness) -> None:
    app = harness.app
    workflow = declare_robust_scenario(app)
    harness.start()

    inv = workflow.send(GOOD_ORDER)
    result = inv.wait(timeout=WAIT)

    assert result["status"] == "completed" and result["order_id"] == "O-7"
    assert is_uuid4(result["payment_id"]) and is_uuid4(result["reservation_id"])
    assert re.fullmatch(r"TRK-O-7-\d{5}", result["tracking_number"])
    started, completed = parse(result["started_at"]), parse(result["completed_at"])
    assert result["processing_time_seconds"] == (completed - started).total_seconds() > 0
    assert app.get_workflow_data(inv.workflow.workflow_id) == {
        "order_id": "O-7",
        "started_at": result["started_at"],
        "status": "completed",
        "payment_id": result["payment_id"],
        "reservation_id": result["reservation_id"],
    }


def test_error_handling_validation_failure(harness: Harness) -> None:
    app = harness.app
    workflow = declare_robust_scenario(app)
    harness.start()

    inv = workflow.send({"items": []})
    result = inv.wait(timeout=WAIT)

    assert is_uuid4(result["order_id"])  # no order id given: a deterministic uuid stands in
    assert result == {
        "order_id": result["order_id"], "status": "failed", "step": "validation",
        "error": ["Missing customer_id", "No items in order"],
    }
    assert app.get_workflow_data(inv.workflow.workflow_id)["status"] == "validation_failed"


@pytest.mark.parametrize("quantity", [0, -1])
def test_error_handling_cleans_up_when_a_child_raises(harness: Harness, quantity: int) -> None:
    app = harness.app
    workflow = declare_robust_scenario(app)
    harness.start()
    # Given an order whose inventory reservation raises in the child task
    order = {**GOOD_ORDER, "items": [{"id": "sku-1", "quantity": quantity}]}

    inv = workflow.send(order)
    result = inv.wait(timeout=WAIT)

    # Then the workflow catches the child's error, runs the cleanup step and records why
    expected_error = f"ValueError: cannot reserve {quantity} of sku-1"
    assert result["status"] == "error" and result["error"] == expected_error
    cleanup = result["cleanup_result"]
    assert cleanup["order_id"] == "O-7" and is_uuid4(cleanup["cleanup_id"])
    assert cleanup["actions"] == ["released_inventory", "voided_payment", "notified_customer"]
    data = app.get_workflow_data(inv.workflow.workflow_id)
    assert data["status"] == "error" and data["error"] == expected_error
    assert "reservation_id" not in data and is_uuid4(data["payment_id"])
    assert app.get_invocation(f"{inv.invocation_id}/3").status == "failed"
    assert app.get_invocation(f"{inv.invocation_id}/4").status == "succeeded"  # the cleanup step
