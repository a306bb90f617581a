"""Tasks served by real `dramatiq` worker processes in the integration tests.

Configured from the environment like a user's module: ENCORE_BROKER_URL, ENCORE_STATE_URL
and ENCORE_KEY_PREFIX (the test gives each run its own prefix and queue).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import Any

import redis

from dramatiq_encore import Encore

QUEUE = os.environ.get("ENCORE_TEST_QUEUE", "encore_it")
app = Encore()


def _export_spans_to(directory: str) -> None:
    """Trace this process's workflows: each span, when it ends, is appended as a JSON line to
    ``<directory>/spans-<pid>.jsonl`` (tests/integration/test_tracing_processes.py)."""
    import json
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from dramatiq_encore.observe import tracing

    class JsonLines(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(os.path.join(directory, f"spans-{os.getpid()}.jsonl"), "a") as out:
                for span in spans:
                    assert span.context is not None
                    parent = None if span.parent is None else f"{span.parent.span_id:016x}"
                    line = {
                        "name": span.name,
                        "trace_id": f"{span.context.trace_id:032x}",
                        "span_id": f"{span.context.span_id:016x}",
                        "parent_id": parent,
                        "start": span.start_time,
                        "end": span.end_time,
                        "pid": os.getpid(),
                        "attributes": dict(span.attributes or {}),
                    }
                    out.write(json.dumps(line) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))
    tracing.instrument(app, tracer_provider=provider)


if os.environ.get("ENCORE_TEST_SPANS_DIR"):
    _export_spans_to(os.environ["ENCORE_TEST_SPANS_DIR"])
_counter = redis.Redis.from_url(os.environ["ENCORE_STATE_URL"])
_prefix = os.environ.get("ENCORE_KEY_PREFIX", "encore")


def count_execution(name: str) -> None:
    """Counts child-body executions (at-least-once: a crash may repeat one)."""
    _counter.hincrby(f"{_prefix}:executions", name, 1)


@app.task(queue_name=QUEUE, min_backoff=50, max_backoff=200)
def slow_step(key: str, i: int, delay: float) -> dict[str, Any]:
    count_execution(f"{key}:{i}")
    time.sleep(delay)
    return {"i": i, "token": slow_step.wf.uuid()}


@app.task(queue_name=QUEUE)
def ten_steps(key: str, steps: int = 10, delay: float = 0.3) -> dict[str, Any]:
    """A sequential workflow that records every deterministic value it sees."""
    seen: dict[str, list[Any]] = {"random": [], "uuid": [], "now": [], "steps": []}
    for i in range(steps):
        seen["random"].append(ten_steps.wf.random())
        seen["uuid"].append(ten_steps.wf.uuid())
        seen["now"].append(ten_steps.wf.utc_now().isoformat())
        seen["steps"].append(ten_steps.wf.execute_task(slow_step, key, i, delay).result)
        ten_steps.wf.set_data(f"step_{i}", seen["uuid"][-1])
    return seen


@app.task(queue_name=QUEUE, min_backoff=50, max_backoff=200)
def plain_step(key: str, i: int, delay: float) -> dict[str, Any]:
    """A step that uses no wf value: its worker resumes the parent (same queue) in place."""
    count_execution(f"{key}:plain:{i}")
    time.sleep(delay)
    return {"i": i, "square": i * i}


@app.task(queue_name=QUEUE)
def plain_steps(key: str, steps: int = 10, delay: float = 0.3) -> dict[str, Any]:
    """A sequential workflow of plain steps, recording a random value before each."""
    seen: dict[str, list[Any]] = {"random": [], "steps": []}
    for i in range(steps):
        seen["random"].append(plain_steps.wf.random())
        seen["steps"].append(plain_steps.wf.execute_task(plain_step, key, i, delay).result)
    return seen


@app.task(queue_name=QUEUE, min_backoff=50, max_backoff=200)
async def async_step(key: str, i: int, delay: float) -> dict[str, Any]:
    """An async activity: its coroutine awaits on the worker's event loop (dramatiq's AsyncIO)."""
    count_execution(f"{key}:async:{i}")
    await asyncio.sleep(delay)
    return {"i": i, "square": i * i}


@app.task(queue_name=QUEUE)
async def async_steps(key: str, steps: int = 8, delay: float = 0.3) -> dict[str, Any]:
    """An async workflow alternating async and sync steps, recording values before each."""
    seen: dict[str, list[Any]] = {"random": [], "uuid": [], "steps": []}
    for i in range(steps):
        seen["random"].append(async_steps.wf.random())
        seen["uuid"].append(async_steps.wf.uuid())
        target = async_step if i % 2 == 0 else slow_step
        seen["steps"].append(async_steps.wf.execute_task(target, key, i, delay).result)
        await asyncio.sleep(0)
    return seen


# --- the reference scenarios, served across worker processes ---------------------------
@app.task(queue_name=QUEUE)
def charge(order_id: str) -> dict[str, Any]:
    return {"payment_id": charge.wf.uuid(), "at": charge.wf.utc_now().isoformat(), "status": "completed"}


@app.task(queue_name=QUEUE, force_new_workflow=True)
def order_workflow(order_id: str) -> dict[str, Any]:
    suffix = int(order_workflow.wf.random() * 100000)
    payment = order_workflow.wf.execute_task(charge, order_id)
    due = order_workflow.wf.utc_now() + timedelta(hours=1)
    order_workflow.wf.set_data("tracking", f"TRK-{order_id}-{suffix:05d}")
    return {"order_id": order_id, "tracking": f"TRK-{order_id}-{suffix:05d}", "payment": payment.result,
            "notify_at": due.isoformat()}


@app.task(queue_name=QUEUE, force_new_workflow=True)
def isolated(data: dict[str, Any]) -> dict[str, Any]:
    return {"workflow_id": isolated.workflow.workflow_id, "parent": isolated.workflow.parent_workflow_id,
            "value": isolated.wf.random(), "data": data}


@app.task(queue_name=QUEUE)
def calls_isolated(data: dict[str, Any]) -> dict[str, Any]:
    child = calls_isolated.wf.execute_task(isolated, data)
    return {"parent": calls_isolated.workflow.workflow_id, "child": child.workflow.workflow_id,
            "child_result": child.result}


@app.task(queue_name=QUEUE, max_retries=1, min_backoff=20, max_backoff=40)
def reserve(order: dict[str, Any]) -> dict[str, Any]:
    if not order.get("items"):
        raise ValueError(f"order {order.get('order_id')} has no items")
    return {"reservation_id": reserve.wf.uuid()}


@app.task(queue_name=QUEUE)
def release(order_id: str) -> dict[str, Any]:
    return {"cleanup_id": release.wf.uuid(), "order_id": order_id}


@app.task(queue_name=QUEUE)
def guarded_order(order: dict[str, Any]) -> dict[str, Any]:
    guarded_order.wf.set_data("status", "processing")
    try:
        reservation = guarded_order.wf.execute_task(reserve, order)
    except Exception as exc:
        guarded_order.wf.set_data("status", "error")
        cleanup = guarded_order.wf.execute_task(release, order["order_id"])
        return {"status": "error", "error": str(exc), "cleanup": cleanup.result}
    guarded_order.wf.set_data("status", "completed")
    return {"status": "completed", "reservation": reservation.result}


# --- parallel steps, timers and signals (tests/integration/test_features_sigkill.py) ------
@app.task(queue_name=QUEUE)
def fan_out_flow(key: str, n: int, delay: float) -> dict[str, Any]:
    """Fan-out of ``n`` slow children in one pass, fan-in with gather."""
    handles = [fan_out_flow.wf.start_task(slow_step, key, i, delay) for i in range(n)]
    results = [inv.result for inv in fan_out_flow.wf.gather(*handles)]
    return {"indexes": [r["i"] for r in results], "tokens": [r["token"] for r in results],
            "marker": fan_out_flow.wf.uuid()}


@app.task(queue_name=QUEUE)
def sleepy_flow(key: str, seconds: float) -> dict[str, Any]:
    """A step, a durable sleep, a step."""
    first = sleepy_flow.wf.execute_task(slow_step, key, 0, 0.0).result
    before = sleepy_flow.wf.utc_now()
    sleepy_flow.wf.sleep(seconds)
    after = sleepy_flow.wf.utc_now()
    second = sleepy_flow.wf.execute_task(slow_step, key, 1, 0.0).result
    return {"before": before.isoformat(), "after": after.isoformat(), "steps": [first, second],
            "random": sleepy_flow.wf.random()}


@app.task(queue_name=QUEUE)
def signal_flow(key: str) -> dict[str, Any]:
    """Waits for two signals, with a step between them."""
    wf = signal_flow.wf
    first = wf.wait_for_signal("go", timeout=120)
    step = wf.execute_task(slow_step, key, 0, 0.0).result
    second = wf.wait_for_signal("go")
    return {"signals": [first, second], "step": step, "uuid": wf.uuid()}


@app.task(queue_name=QUEUE)
def cancellable_flow(key: str) -> str:
    """Sleeps for a minute; a cancel runs the cleanup step in ``finally``."""
    try:
        cancellable_flow.wf.sleep(60)
        return "slept"
    finally:
        cancellable_flow.wf.execute_task(slow_step, key, 99, 1.0)


@app.task(queue_name=QUEUE)
def deadline_flow(key: str, work_s: float, deadline_s: float) -> dict[str, Any]:
    """A child racing a deadline, then one more step."""
    try:
        outcome = deadline_flow.wf.execute_task_with_options(slow_step, args=(key, 0, work_s), timeout=deadline_s)
        first: Any = outcome.result
    except TimeoutError as exc:
        first = str(exc)
    after = deadline_flow.wf.execute_task(slow_step, key, 1, 0.0).result
    return {"first": first, "after": after}


@app.task(queue_name=QUEUE)
def looping_flow(key: str, round_no: int, rounds: int, total: int) -> dict[str, Any]:
    """One slow step per run, then continue as new until ``rounds`` runs are done."""
    step = looping_flow.wf.execute_task(slow_step, key, round_no, 0.3).result
    total += step["i"]
    if round_no + 1 < rounds:
        looping_flow.wf.continue_as_new(key, round_no + 1, rounds, total)
    return {"total": total, "rounds": round_no + 1}


# Which version of the code this worker runs: a test restarts workers with version 2 to
# deploy a change while a workflow is in flight.
CODE_VERSION = int(os.environ.get("ENCORE_TEST_CODE_VERSION", "1"))


@app.task(queue_name=QUEUE)
def versioned_flow(key: str, delay: float) -> dict[str, Any]:
    """Version 2 added a receipt step between the two steps, guarded by patched()."""
    first = versioned_flow.wf.execute_task(slow_step, key, 0, delay).result
    path = "old"
    if CODE_VERSION >= 2 and versioned_flow.wf.patched("receipt"):
        versioned_flow.wf.execute_task(slow_step, key, 100, 0.0)
        path = "new"
    second = versioned_flow.wf.execute_task(slow_step, key, 1, delay).result
    return {"path": path, "steps": [first["i"], second["i"]], "version": CODE_VERSION}


# --- tracing across worker processes (tests/integration/test_tracing_processes.py) ---------
@app.task(queue_name=QUEUE, force_new_workflow=True)
def traced_child(key: str, i: int) -> dict[str, Any]:
    """A child workflow with one step of its own."""
    return traced_child.wf.execute_task(slow_step, key, i, 0.05).result


@app.task(queue_name=QUEUE)
def traced_flow(key: str, steps: int) -> list[int]:
    """``steps`` sequential steps, then a child workflow."""
    done = [traced_flow.wf.execute_task(slow_step, key, i, 0.05).result["i"] for i in range(steps)]
    done.append(traced_flow.wf.execute_task(traced_child, key, 100).result["i"])
    return done
