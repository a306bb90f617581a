"""``async def`` tasks, on both backend pairs: activities awaited on dramatiq's event loop,
workflows whose coroutine calls ``wf.*`` with the same replay semantics as a ``def`` task."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any

import pytest
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware.asyncio import AsyncIO

from dramatiq_encore import TaskError
from tests.conftest import Harness
from tests.support.waiting import wait_until
from tests.test_contract import Tally, is_uuid4, journal

WAIT = 30.0


def _shape(entries: list[dict[str, Any]]) -> tuple[list[tuple[Any, ...]], list[int]]:
    """What a journal recorded, without what differs between two runs of one workflow: seeds
    and times, and the order in which parallel children's results arrived."""
    recorded = [(e["e"], e.get("k"), e.get("n"), e.get("task"), e.get("name"), e.get("args")) for e in entries]
    return [r for r in recorded if r[0] != "res"], sorted(e["n"] for e in entries if e["e"] == "res")


def test_a_sync_workflow_awaits_an_async_activity_on_dramatiqs_event_loop(harness: Harness) -> None:
    app = harness.app
    threads: list[threading.Thread] = []

    @app.task
    async def fetch_price(sku: str) -> dict[str, Any]:
        threads.append(threading.current_thread())
        await asyncio.sleep(0.05)
        return {"sku": sku, "price": 12.5}

    @app.task
    def quote(sku: str) -> dict[str, Any]:
        price = quote.wf.execute_task(fetch_price, sku).result
        return {"quote": price["price"] * 2, "id": quote.wf.uuid()}

    # The first async task gave the broker dramatiq's AsyncIO middleware, once
    assert sum(isinstance(m, AsyncIO) for m in app.broker.middleware) == 1
    harness.start()
    result = quote.send("BOLT").wait(timeout=WAIT)
    assert result["quote"] == 25.0 and is_uuid4(result["id"])
    loop_thread = get_event_loop_thread()
    assert loop_thread is not None and threads == [loop_thread]


def test_an_async_workflow_calls_sync_and_async_children_and_keeps_its_values(harness: Harness) -> None:
    app = harness.app
    bodies = Tally()

    @app.task
    def add_tax(amount: float) -> float:
        bodies.add("add_tax")
        return round(amount * 1.2, 2)

    @app.task
    async def reserve(sku: str) -> str:
        bodies.add("reserve")
        await asyncio.sleep(0.01)
        return f"R-{sku}-{reserve.wf.uuid()[:8]}"  # an async child that uses wf.* (its own first pass)

    @app.task(force_new_workflow=True)
    async def audit(order_id: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"workflow": audit.workflow.workflow_id, "parent": audit.workflow.parent_workflow_id}

    @app.task
    async def order(order_id: str) -> dict[str, Any]:
        bodies.add("order")
        suffix = int(order.wf.random() * 100_000)
        started = order.wf.utc_now()
        total = order.wf.execute_task(add_tax, 10.0).result
        await asyncio.sleep(0.01)
        reservation = order.wf.execute_task(reserve, "BOLT").result
        order.wf.set_data("tracking", f"TRK-{order_id}-{suffix:05d}")
        audited = order.wf.execute_task(audit, order_id).result
        return {
            "total": total,
            "reservation": reservation,
            "tracking": order.wf.get_data("tracking"),
            "missing": order.wf.get_data("nothing", "default"),
            "audit": audited,
            "ids": [order.wf.uuid(), order.wf.uuid()],
            "elapsed_ok": order.wf.utc_now() > started,
        }

    harness.start()
    inv = order.send("A-1")
    result = inv.wait(timeout=WAIT)
    assert result["total"] == 12.0 and result["reservation"].startswith("R-BOLT-")
    assert result["tracking"].startswith("TRK-A-1-") and result["missing"] == "default"
    assert result["audit"]["parent"] == inv.invocation_id and result["audit"]["workflow"] != inv.invocation_id
    assert all(is_uuid4(i) for i in result["ids"]) and result["elapsed_ok"]
    assert app.get_workflow_data(inv.invocation_id) == {"tracking": result["tracking"]}
    # The workflow ran once per step (4 passes), each child's body once
    assert bodies["order"] == 4 and bodies["add_tax"] == 1 and bodies["reserve"] == 1
    steps = [e["task"] for e in journal(app, inv.invocation_id) if e["e"] == "step"]
    assert steps == ["add_tax", "reserve", "audit"]


def test_the_same_workflow_as_def_and_async_def_records_the_same_journal(harness: Harness) -> None:
    app = harness.app

    @app.task
    def double(x: int) -> int:
        return 2 * x

    def body(wf: Any, n: int) -> dict[str, Any]:
        values = [wf.random(), wf.utc_now().isoformat()]
        first = wf.execute_task(double, n).result
        wf.set_data("first", first)
        handles = [wf.start_task(double, i) for i in range(3)]
        gathered = [h.result for h in wf.gather(*handles)]
        wf.sleep(dt.timedelta(milliseconds=50))
        return {"first": first, "gathered": gathered, "data": wf.get_data("first"), "n": len(values), "u": wf.uuid()}

    @app.task
    def plain(n: int) -> dict[str, Any]:
        return body(plain.wf, n)

    @app.task
    async def coroutine(n: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return body(coroutine.wf, n)

    harness.start()
    sync, coro = plain.send(5), coroutine.send(5)
    sync_result, coro_result = sync.wait(timeout=WAIT), coro.wait(timeout=WAIT)
    assert {**sync_result, "u": None} == {**coro_result, "u": None} == {
        "first": 10,
        "gathered": [0, 2, 4],
        "data": 10,
        "n": 2,
        "u": None,
    }
    assert _shape(journal(app, sync.invocation_id)) == _shape(journal(app, coro.invocation_id))


def test_an_async_workflow_sleeps_and_waits_for_a_signal(harness: Harness) -> None:
    app = harness.app

    @app.task
    async def approval(doc: str) -> dict[str, Any]:
        before = approval.wf.utc_now()
        approval.wf.sleep(dt.timedelta(milliseconds=100))
        after = approval.wf.utc_now()
        decision = approval.wf.wait_for_signal("decision")
        await asyncio.sleep(0)
        return {"doc": doc, "decision": decision, "slept": (after - before).total_seconds()}

    harness.start()
    inv = approval.send("D-1")
    assert wait_until(
        lambda: any(e["e"] == "wait" for e in journal(app, inv.invocation_id)) and inv.status == "suspended",
        timeout=WAIT,
    )
    app.signal(inv.invocation_id, "decision", {"approved": True})
    result = inv.wait(timeout=WAIT)
    assert result["decision"] == {"approved": True} and result["slept"] >= 0.1


def test_a_failing_async_child_raises_task_error_in_its_workflow(harness: Harness) -> None:
    app = harness.app

    class OutOfStock(Exception):
        pass

    @app.task(max_retries=0)
    async def pick(sku: str) -> int:
        await asyncio.sleep(0)
        raise OutOfStock(f"{sku}: none left")

    @app.task
    async def ship(sku: str) -> dict[str, Any]:
        try:
            ship.wf.execute_task(pick, sku)
        except TaskError as err:
            return {"error_type": err.error_type, "message": err.message}
        return {"error_type": None, "message": ""}

    harness.start()
    assert ship.send("DESK").wait(timeout=WAIT) == {"error_type": "OutOfStock", "message": "DESK: none left"}
    with pytest.raises(TaskError) as failed:
        pick.send("LAMP").wait(timeout=WAIT)
    assert failed.value.error_type == "OutOfStock"


def test_async_activities_await_concurrently_on_one_loop(harness: Harness) -> None:
    app = harness.app
    lock = threading.Lock()
    running = {"now": 0, "most": 0}
    loops: set[int] = set()

    @app.task
    async def call_supplier(i: int) -> int:
        loops.add(id(asyncio.get_running_loop()))
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.3)
        with lock:
            running["now"] -= 1
        return i

    @app.task
    def best_quote(n: int) -> list[int]:
        return [h.result for h in best_quote.wf.gather(*[best_quote.wf.start_task(call_supplier, i) for i in range(n)])]

    harness.start()
    assert best_quote.send(6).wait(timeout=WAIT) == list(range(6))
    # Several coroutines were awaiting at once, all on dramatiq's one event loop
    assert running["most"] >= 2 and len(loops) == 1


def test_a_time_limit_cancels_an_async_activity(harness: Harness) -> None:
    app = harness.app
    cancelled = threading.Event()

    @app.task(time_limit=300, max_retries=0)
    async def stuck() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    harness.start()
    with pytest.raises(TaskError) as failed:
        stuck.send().wait(timeout=WAIT)
    assert failed.value.error_type == "TimeLimitExceeded" and cancelled.is_set()


def test_cancelling_an_async_workflow_runs_its_cleanup_step(harness: Harness) -> None:
    app = harness.app

    @app.task
    async def release(doc: str) -> str:
        return f"released {doc}"

    @app.task
    async def publish(doc: str) -> str:
        try:
            publish.wf.wait_for_signal("go")
            return "published"
        finally:
            publish.wf.set_data("cleanup", publish.wf.execute_task(release, doc).result)

    harness.start()
    inv = publish.send("D-2")
    assert wait_until(lambda: inv.status == "suspended", timeout=WAIT)
    app.cancel(inv.invocation_id, reason="withdrawn")
    with pytest.raises(TaskError) as cancelled:
        inv.wait(timeout=WAIT)
    assert cancelled.value.error_type == "Cancelled" and inv.status == "cancelled"
    assert app.get_workflow_data(inv.invocation_id) == {"cleanup": "released D-2"}


def test_an_async_workflows_history_replays_against_its_code(harness: Harness) -> None:
    app = harness.app
    from dramatiq_encore.testing import assert_replays

    @app.task
    async def lookup(n: int) -> int:
        await asyncio.sleep(0)
        return n + 1

    @app.task
    async def chain(n: int) -> dict[str, Any]:
        first = chain.wf.execute_task(lookup, n).result
        return {"second": chain.wf.execute_task(lookup, first).result, "id": chain.wf.uuid()}

    harness.start()
    inv = chain.send(1)
    assert inv.wait(timeout=WAIT)["second"] == 3
    # The replayer (no broker, no state writes) re-runs the coroutine over its recorded journal
    assert_replays(app, app.export(inv.invocation_id))
