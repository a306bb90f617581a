"""OpenTelemetry spans of workflows (``dramatiq_encore.observe.tracing``), on every backend pair.

Each test instruments the harness's app with its own SDK tracer provider and an in-memory
exporter (a SimpleSpanProcessor exports each span when it ends), runs real workflows and
reads the spans: one per invocation and one per step, emitted once however many passes ran,
all in one trace per workflow tree, parented step -> child invocation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from dramatiq.brokers.stub import StubBroker
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dramatiq_encore import Encore, TaskError
from dramatiq_encore.actors.messages import TRACE
from dramatiq_encore.broker_config.encoder import check_body
from dramatiq_encore.observe import tracing
from dramatiq_encore.observe.hooks import PassEnded, StepResolved, events
from dramatiq_encore.state import MemoryState
from tests.conftest import Harness
from tests.support.bad_bodies import body

WAIT = 15.0
MS = 1_000_000


class Traced:
    """The provider the app is instrumented with, and what it exported."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self._passes: list[PassEnded] = []
        self._lock = threading.Lock()

    def count_pass(self, event: PassEnded) -> None:
        with self._lock:
            self._passes.append(event)

    def passes(self, invocation_id: str) -> int:
        with self._lock:
            return sum(1 for event in self._passes if event.invocation_id == invocation_id)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def wait_for(self, count: int, timeout: float = WAIT) -> list[ReadableSpan]:
        """The spans once ``count`` have ended (a child's span may end after its parent's: it is
        emitted after its result went out), and a moment more for any duplicate to show."""
        deadline = time.monotonic() + timeout
        while len(self.spans()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        return self.spans()

    def invocation(self, spans: list[ReadableSpan], invocation_id: str) -> ReadableSpan:
        (found,) = [
            s for s in spans if s.name.startswith("encore.invocation ") and _attr(s, "invocation_id") == invocation_id
        ]
        return found

    def step(self, spans: list[ReadableSpan], invocation_id: str, n: int) -> ReadableSpan:
        (found,) = [
            s
            for s in spans
            if s.name.startswith("encore.step ")
            and _attr(s, "invocation_id") == invocation_id
            and _attr(s, "step") == n
        ]
        return found


def _attr(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(f"encore.{name}")


def _ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _assert_one_trace_no_duplicates(spans: list[ReadableSpan]) -> int:
    traces = {_ids(s)[0] for s in spans}
    assert len(traces) == 1, f"{len(traces)} traces"
    span_ids = [_ids(s)[1] for s in spans]
    assert len(span_ids) == len(set(span_ids)), sorted(s.name for s in spans)
    for span in spans:
        assert span.start_time is not None and span.end_time is not None and span.start_time <= span.end_time
    return traces.pop()


@pytest.fixture
def traced(harness: Harness) -> Iterator[Traced]:
    result = Traced()
    assert tracing.instrument(harness.app, tracer_provider=result.provider)
    events.subscribe(PassEnded, result.count_pass)
    try:
        yield result
    finally:
        events.unsubscribe(PassEnded, result.count_pass)
        tracing.uninstrument()


def test_a_three_step_workflow_gives_a_span_per_invocation_and_per_step_once(harness: Harness, traced: Traced) -> None:
    app = harness.app

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def three(x: int) -> int:
        total = x
        for i in range(3):
            total = three.wf.execute_task(add, total, i).result
        return total

    harness.start()
    inv = three.send(10)
    assert inv.wait(timeout=WAIT) == 13
    root = inv.invocation_id
    spans = traced.wait_for(7)
    assert traced.passes(root) >= 4  # the start and one pass per result: each replays the steps before
    assert sorted(s.name for s in spans) == sorted(
        ["encore.invocation three"] + ["encore.invocation add"] * 3 + [f"encore.step {n} add" for n in (1, 2, 3)]
    )
    _assert_one_trace_no_duplicates(spans)
    root_span = traced.invocation(spans, root)
    assert root_span.parent is None  # no producer span: the root's span starts the trace
    assert _attr(root_span, "status") == "succeeded" and _attr(root_span, "workflow_type") == "three"
    assert _attr(root_span, "workflow_id") == root
    for n in (1, 2, 3):
        step = traced.step(spans, root, n)
        child = traced.invocation(spans, f"{root}/{n}")
        assert _parent_id(step) == _ids(root_span)[1]
        assert _parent_id(child) == _ids(step)[1]
        assert _attr(step, "child") == f"{root}/{n}" and _attr(step, "ok") is True
        # A start message's timestamp has whole milliseconds: a child may seem to start just before its step.
        assert root_span.start_time <= step.start_time <= child.start_time + MS  # type: ignore[operator]
        assert step.end_time <= root_span.end_time  # type: ignore[operator]


def test_a_child_workflow_joins_its_parents_trace(harness: Harness, traced: Traced) -> None:
    app = harness.app

    @app.task
    def leaf(x: int) -> int:
        return x * 2

    @app.task(force_new_workflow=True)
    def sub(x: int) -> dict[str, Any]:
        return {"value": sub.wf.execute_task(leaf, x).result, "workflow": sub.workflow.workflow_id}

    @app.task
    def parent(x: int) -> dict[str, Any]:
        return parent.wf.execute_task(sub, x).result

    harness.start()
    inv = parent.send(4)
    result = inv.wait(timeout=WAIT)
    root = inv.invocation_id
    assert result["value"] == 8 and result["workflow"] != root
    spans = traced.wait_for(5)
    assert len(spans) == 5, [s.name for s in spans]  # 3 invocations, 2 steps
    _assert_one_trace_no_duplicates(spans)
    sub_span = traced.invocation(spans, f"{root}/1")
    assert _attr(sub_span, "workflow_id") == result["workflow"] != _attr(traced.invocation(spans, root), "workflow_id")
    assert _parent_id(sub_span) == _ids(traced.step(spans, root, 1))[1]
    leaf_span = traced.invocation(spans, f"{root}/1/1")
    assert _parent_id(leaf_span) == _ids(traced.step(spans, f"{root}/1", 1))[1]
    assert _parent_id(traced.step(spans, f"{root}/1", 1)) == _ids(sub_span)[1]


def test_the_producers_span_is_the_roots_parent(harness: Harness, traced: Traced) -> None:
    app = harness.app

    @app.task
    def leaf(x: int) -> int:
        return x + 1

    @app.task
    def flow(x: int) -> int:
        return flow.wf.execute_task(leaf, flow.wf.execute_task(leaf, x).result).result

    harness.start()
    with traced.provider.get_tracer("producer").start_as_current_span("checkout") as producer:
        inv = flow.send(1)
    assert inv.wait(timeout=WAIT) == 3
    root = inv.invocation_id
    spans = traced.wait_for(6)
    trace_id = _assert_one_trace_no_duplicates(spans)
    producer_context = producer.get_span_context()
    assert trace_id == producer_context.trace_id
    assert [s.name for s in spans].count("checkout") == 1
    root_span = traced.invocation(spans, root)
    assert _parent_id(root_span) == producer_context.span_id
    assert root_span.parent is not None and root_span.parent.is_remote  # it came in the start message
    assert len(spans) == 1 + 3 + 2


def test_a_failed_step_and_a_timer_have_spans_with_their_status(harness: Harness, traced: Traced) -> None:
    app = harness.app

    @app.task(max_retries=0)
    def boom() -> None:
        raise ValueError("no")

    @app.task
    def flow() -> str:
        flow.wf.sleep(0.05)
        try:
            flow.wf.execute_task(boom)
        except TaskError:
            return "caught"
        return "not raised"

    harness.start()
    inv = flow.send()
    assert inv.wait(timeout=WAIT) == "caught"
    root = inv.invocation_id
    spans = traced.wait_for(4)
    assert len(spans) == 4, [s.name for s in spans]  # 2 invocations, 2 steps
    _assert_one_trace_no_duplicates(spans)
    timer = traced.step(spans, root, 1)
    assert timer.end_time - timer.start_time >= 40_000_000  # type: ignore[operator]  # the 0.05 s it slept
    failed = traced.step(spans, root, 2)
    assert _attr(failed, "ok") is False and failed.status.status_code == StatusCode.ERROR
    assert traced.invocation(spans, f"{root}/2").status.status_code == StatusCode.ERROR
    assert _attr(traced.invocation(spans, f"{root}/2"), "status") == "failed"
    assert _attr(traced.invocation(spans, root), "status") == "succeeded"


def test_a_signal_wait_is_a_step_of_the_same_trace(harness: Harness, traced: Traced) -> None:
    app = harness.app

    @app.task
    def waits() -> Any:
        return waits.wf.wait_for_signal("go", timeout=30)

    harness.start()
    inv = waits.send()
    app.signal(inv.invocation_id, "go", {"ok": 1})
    assert inv.wait(timeout=WAIT) == {"ok": 1}
    root = inv.invocation_id
    spans = traced.wait_for(2)
    assert sorted(s.name for s in spans) == ["encore.invocation waits", "encore.step 1 signal:go"]
    _assert_one_trace_no_duplicates(spans)
    assert _parent_id(traced.step(spans, root, 1)) == _ids(traced.invocation(spans, root))[1]


def test_a_broken_tracer_never_breaks_a_workflow(
    harness: Harness, traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter down")

    monkeypatch.setattr(tracing.Tracing, "emit", staticmethod(broken))
    app = harness.app

    @app.task
    def leaf(x: int) -> int:
        return x

    @app.task
    def flow(x: int) -> int:
        return flow.wf.execute_task(leaf, x).result

    harness.start()
    assert flow.send(5).wait(timeout=WAIT) == 5
    assert traced.spans() == []


def test_without_opentelemetry_nothing_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Encore(broker=StubBroker(), state=MemoryState())
    monkeypatch.setattr(tracing, "AVAILABLE", False)
    before = list(app.broker.middleware)
    assert tracing.instrument(app) is False
    assert app.broker.middleware == before
    assert events._listeners.get(StepResolved, []) == []
    app.close()


_WITHOUT_OTEL = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ImportError(name)

sys.meta_path.insert(0, Block())
from dramatiq.brokers.stub import StubBroker
from dramatiq_encore import Encore
from dramatiq_encore.observe import tracing
from dramatiq_encore.state import MemoryState

app = Encore(broker=StubBroker(), state=MemoryState())
assert not tracing.AVAILABLE and tracing.instrument(app) is False
assert not any("Tracing" in type(m).__name__ for m in app.broker.middleware)
print("ok")
"""


def test_the_module_imports_without_opentelemetry() -> None:
    done = subprocess.run([sys.executable, "-c", _WITHOUT_OTEL], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_trace_context_option_is_a_string() -> None:
    carried = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    fields = body("q", "wf", options={TRACE: carried})
    assert check_body(json.dumps(fields).encode())["options"][TRACE] == carried
    for bad in (7, {"traceparent": carried}, "x" * 600):
        with pytest.raises(ValueError, match=TRACE):
            check_body(json.dumps(body("q", "wf", options={TRACE: bad})).encode())
