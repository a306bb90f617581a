"""One trace per workflow across two real `dramatiq` worker processes.

Each worker traces to its own JSON-lines file (``ENCORE_TEST_SPANS_DIR``, see
``tests/integration/wf_app.py``), written when each span ends; this process traces the
producer's span around ``send``. The files together must hold one trace, each span once,
with the tree's structure, although its spans were emitted by both processes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dramatiq_encore.observe import tracing
from tests.integration.conftest import MODULE
from tests.integration.workers import WorkerProcess, stop_all, wait_until
from tests.support.rabbit import consumer_count

pytestmark = pytest.mark.realservices

STEPS = 6
# The root, its STEPS children and the child workflow with its own child; a step span each.
EXPECTED = (1 + STEPS + 2) + (STEPS + 1 + 1)
MS = 1_000_000


@pytest.fixture
def spans_dir(tmp_path: Path) -> Path:
    path = tmp_path / "spans"
    path.mkdir()
    return path


@pytest.fixture
def traced_workers(
    it_env: dict[str, str], wf_app: ModuleType, tmp_path: Path, spans_dir: Path
) -> Iterator[list[WorkerProcess]]:
    env = {**it_env, "ENCORE_TEST_SPANS_DIR": str(spans_dir)}
    group = [WorkerProcess(MODULE, env, tmp_path / f"traced-{n}.log").start() for n in range(2)]
    assert wait_until(lambda: consumer_count(it_env["ENCORE_BROKER_URL"], it_env["ENCORE_TEST_QUEUE"]) >= 2, timeout=30)
    try:
        yield group
    finally:
        stop_all(group)


@pytest.fixture
def producer(wf_app: ModuleType) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """This process sends with a span current (its app traced for the test's duration)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.instrument(wf_app.app, tracer_provider=provider)
    try:
        yield provider, exporter
    finally:
        tracing.uninstrument()


def _read(spans_dir: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(spans_dir.glob("spans-*.jsonl")):
        spans += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return spans


def _by(spans: list[dict[str, Any]], kind: str, invocation_id: str, n: int | None = None) -> dict[str, Any]:
    (found,) = [
        s
        for s in spans
        if s["name"].startswith(f"encore.{kind} ")
        and s["attributes"]["encore.invocation_id"] == invocation_id
        and (n is None or s["attributes"]["encore.step"] == n)
    ]
    return found


def test_one_trace_across_two_worker_processes(
    wf_app: ModuleType,
    traced_workers: list[WorkerProcess],
    spans_dir: Path,
    producer: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = producer
    with provider.get_tracer("test").start_as_current_span("request") as request:
        inv = wf_app.traced_flow.send(f"trace-{uuid.uuid4().hex[:8]}", STEPS)
    assert inv.wait(timeout=60) == [*range(STEPS), 100]
    assert wait_until(lambda: len(_read(spans_dir)) >= EXPECTED, timeout=20)
    time.sleep(0.5)  # nothing more comes
    spans = _read(spans_dir)
    assert len(spans) == EXPECTED, sorted(s["name"] for s in spans)
    assert len({s["pid"] for s in spans}) == 2, "all spans came from one process"
    assert {s["trace_id"] for s in spans} == {f"{request.get_span_context().trace_id:032x}"}
    assert len({s["span_id"] for s in spans}) == len(spans), "a span was emitted twice"
    root = inv.invocation_id
    assert _by(spans, "invocation", root)["parent_id"] == f"{request.get_span_context().span_id:016x}"
    child_workflow = f"{root}/{STEPS + 1}"
    parents = {root: range(1, STEPS + 2), child_workflow: range(1, 2)}
    for parent, steps in parents.items():
        invocation = _by(spans, "invocation", parent)
        for n in steps:
            step = _by(spans, "step", parent, n)
            assert step["parent_id"] == invocation["span_id"]
            child = _by(spans, "invocation", f"{parent}/{n}")
            assert child["parent_id"] == step["span_id"]
            # A start message's timestamp has whole milliseconds: a child may seem to start just before its step.
            assert (
                invocation["start"]
                <= step["start"]
                <= child["start"] + MS
                <= step["end"] + MS
                <= invocation["end"] + MS
            )
    assert _by(spans, "invocation", child_workflow)["attributes"]["encore.workflow_id"] != root
