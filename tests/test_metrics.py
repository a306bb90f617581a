"""Prometheus metrics (``dramatiq_encore.observe.metrics``) of an in-process worker, on every
backend pair: N workflows of K steps run, the endpoint is scraped over HTTP and parsed, and
the counts are what ran. Run with ``ENCORE_FAST_PATH=0`` too.

The metrics are the process's (their counters live as long as it does), so each test reads
what changed across its own run and names its tasks uniquely.
"""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from prometheus_client.parser import text_string_to_metric_families

from dramatiq_encore import Encore, TaskError
from dramatiq_encore.broker_config import EncoreSettings
from dramatiq_encore.broker_config.embedded import start_time_limits
from dramatiq_encore.observe import emit, metrics
from dramatiq_encore.observe.hooks import PassEnded, StepResolved, WorkflowStarted, events
from dramatiq_encore.state import MemoryState
from tests.conftest import Harness

WAIT = 30.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> Samples:
    """Every sample the endpoint serves: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (sample, _), v in samples.items() if sample == name)


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def serve(harness: Harness) -> int:
    harness.app.settings.metrics_port = free_port()
    harness.start()
    port = metrics.served_port()
    assert port is not None
    return port


def test_metrics_count_the_workflows_steps_and_passes_that_ran(harness: Harness) -> None:
    app, n, k = harness.app, 3, 4
    suffix = uuid.uuid4().hex[:8]
    flow_type, failing_type = f"flow_{suffix}", f"failing_{suffix}"

    @app.task(actor_name=f"leaf_{suffix}")
    def leaf(i: int) -> int:
        return i + 1

    @app.task(actor_name=f"boom_{suffix}", max_retries=0)
    def boom() -> None:
        raise ValueError("no")

    @app.task(actor_name=flow_type)
    def flow(steps: int) -> int:
        return sum(flow.wf.execute_task(leaf, i).result for i in range(steps))

    @app.task(actor_name=failing_type)
    def failing() -> None:
        failing.wf.execute_task(boom)

    port = serve(harness)
    before = scrape(port)
    handles = [flow.send(k) for _ in range(n)]
    assert [h.wait(timeout=WAIT) for h in handles] == [sum(range(1, k + 1))] * n
    with pytest.raises(TaskError):
        failing.send().wait(timeout=WAIT)
    assert eventually(
        lambda: value(scrape(port), "encore_workflows_finished_total", workflow_type=failing_type, status="failed") == 1
    )
    after = scrape(port)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("encore_workflows_started_total", workflow_type=flow_type) == n
    assert grew("encore_workflows_started_total", workflow_type=failing_type) == 1
    assert value(after, "encore_workflows_started_total", workflow_type=f"leaf_{suffix}") == 0  # roots only
    assert grew("encore_workflows_finished_total", workflow_type=flow_type, status="succeeded") == n
    assert grew("encore_workflows_finished_total", workflow_type=failing_type, status="failed") == 1
    # A root's passes (one per step, then the last) and its children's (one each), by the root's type.
    assert grew("encore_passes_total", workflow_type=flow_type) >= n * (k + 1) + n * k
    assert grew("encore_passes_total", workflow_type=failing_type) >= 2 + 1
    assert grew("encore_step_seconds_count") == n * k + 1  # every step resolved, the failed one too
    assert 0 <= grew("encore_step_seconds_sum") < WAIT * (n * k + 1)
    passes = total(after, "encore_passes_total") - total(before, "encore_passes_total")
    assert grew("encore_replay_seconds_count") == passes
    assert value(after, "encore_replay_seconds_bucket", le="+Inf") == value(after, "encore_replay_seconds_count")


def test_the_suspended_gauge_is_read_from_the_index_at_scrape_time(harness: Harness) -> None:
    app = harness.app
    suffix = uuid.uuid4().hex[:8]

    @app.task(actor_name=f"waits_{suffix}")
    def waits() -> Any:
        return waits.wf.wait_for_signal("go")

    port = serve(harness)
    assert value(scrape(port), "encore_suspended_workflows") == app.count_workflows("suspended") == 0
    inv = waits.send()
    assert eventually(lambda: value(scrape(port), "encore_suspended_workflows") == 1)
    app.signal(inv.invocation_id, "go", {"ok": True})
    assert inv.wait(timeout=WAIT) == {"ok": True}
    assert eventually(lambda: value(scrape(port), "encore_suspended_workflows") == 0)


def test_no_port_no_server_and_no_listener(harness: Harness) -> None:
    app = harness.app
    assert app.settings.metrics_port is None

    @app.task
    def hello() -> str:
        return "hi"

    harness.start()
    assert metrics.served_port() is None
    assert hello.send().wait(timeout=WAIT) == "hi"
    assert metrics.metrics().on_pass not in events._listeners.get(PassEnded, [])


def test_the_server_takes_the_next_free_port_and_stops_with_the_last_worker() -> None:
    app = Encore(broker=StubBroker(), state=MemoryState(), settings=EncoreSettings())
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        base = int(taken.getsockname()[1])
        try:
            port = metrics.serve(app, base)
            assert port is not None and base < port < base + metrics.PORTS
            assert metrics.serve(app, base) == port  # one server per process
            assert "encore_suspended_workflows" in {name for name, _ in scrape(port)}
            assert events.wants(WorkflowStarted)
        finally:
            metrics.release(app)
    assert metrics.served_port() is None
    with pytest.raises(OSError):
        scrape(port)
    app.close()


def test_dramatiqs_own_prometheus_middleware_keeps_working_beside_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dramatiq.middleware import prometheus

    # What the CLI's process_boot does to the environment, undone after the test.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("prometheus_multiproc_dir", str(tmp_path))
    monkeypatch.setattr(prometheus, "DB_PATH", str(tmp_path))
    broker = StubBroker()
    dramatiqs = prometheus.Prometheus()
    broker.add_middleware(dramatiqs)
    port = free_port()
    app = Encore(broker=broker, state=MemoryState(), settings=EncoreSettings(metrics_port=port))

    @app.task
    def leaf(i: int) -> int:
        return i

    @app.task
    def flow() -> int:
        return flow.wf.execute_task(leaf, 2).result

    broker.emit_after("process_boot")  # as in a CLI worker process: dramatiq's metrics are set up
    start_time_limits(broker)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=20)
    worker.start()
    try:
        assert metrics.served_port() == port != prometheus.HTTP_PORT
        assert flow.send().wait(timeout=WAIT) == 2
        counted = dramatiqs.total_messages  # dramatiq's own counter of messages processed
        assert eventually(lambda: all(counted.labels("default", actor)._value.get() >= 1 for actor in ("flow", "leaf")))
        ours = scrape(port)
        assert value(ours, "encore_workflows_finished_total", workflow_type="flow", status="succeeded") >= 1
        assert not any(name.startswith("dramatiq_") for name, _ in ours)  # a registry of its own
    finally:
        worker.stop()
        app.close()
    assert metrics.served_port() is None


def test_emitting_costs_next_to_nothing_without_listeners() -> None:
    class Unheard:
        pass

    class Timer:
        started = 0.0

        @staticmethod
        def times() -> tuple[float, float]:
            return 0.0, 0.0

    assert not events.wants(Unheard)
    count = 10_000
    started = time.perf_counter()
    for _ in range(count):
        events.emit(Unheard())
    bus = time.perf_counter() - started
    assert not events.wants(PassEnded) or pytest.skip("a listener is subscribed in this process")
    started = time.perf_counter()
    for _ in range(count):
        emit.pass_ended(None, "succeeded", Timer())  # type: ignore[arg-type]  # built only when listened to
    point = time.perf_counter() - started
    print(f"{count} emits with no listener: bus {bus * 1e3:.2f} ms, emission point {point * 1e3:.2f} ms")
    assert bus < 0.1 and point < 0.1  # ~0.1-0.3 us each; generous for a loaded CI machine


def test_every_kind_of_step_resolution_is_observed_once(harness: Harness) -> None:
    """Results gathered from a fan-out (recorded while the parent waits on the others: no lease),
    a timer that lost its race and fired later (no lease either), a sleep, a signal consumed
    by the pass itself, a failed child: one StepResolved each, with its times."""
    app = harness.app
    seen: list[StepResolved] = []
    events.subscribe(StepResolved, seen.append)

    @app.task
    def leaf(i: int) -> int:
        return i

    @app.task(max_retries=0)
    def boom() -> None:
        raise ValueError("no")

    @app.task
    def flow() -> str:
        wf = flow.wf
        wf.gather(*(wf.start_task(leaf, i) for i in range(3)))  # steps 1-3
        wf.execute_task_with_options(leaf, args=(9,), timeout=0.3)  # step 4, its timer step 5
        wf.sleep(0.6)  # step 6: the timer of step 5 fires meanwhile
        wf.wait_for_signal("go")  # step 7
        try:
            wf.execute_task(boom)  # step 8
        except TaskError:
            return "done"
        return "not raised"

    port = serve(harness)
    before = scrape(port)
    try:
        inv = flow.send()
        app.signal(inv.invocation_id, "go", 1)
        assert inv.wait(timeout=WAIT) == "done"
        root = inv.invocation_id
        mine = lambda: [e for e in list(seen) if e.invocation_id == root]  # noqa: E731
        assert eventually(lambda: len(mine()) >= 8)
        time.sleep(0.2)
    finally:
        events.unsubscribe(StepResolved, seen.append)
    by_step = sorted(mine(), key=lambda e: e.n)
    assert [e.n for e in by_step] == list(range(1, 9))
    assert [e.task for e in by_step] == ["leaf"] * 4 + ["timer", "timer", "signal:go", "boom"]
    assert [e.ok for e in by_step] == [True] * 7 + [False]
    assert [e.child for e in by_step] == [f"{root}/{n}" for n in (1, 2, 3, 4)] + [None] * 3 + [f"{root}/8"]
    assert all(e.workflow_id == root and e.started_at is not None for e in by_step)
    assert all(e.started_at <= e.resolved_at + 0.05 for e in by_step)  # type: ignore[operator]
    assert by_step[5].resolved_at - by_step[5].started_at >= 0.55  # type: ignore[operator]  # the sleep
    after = scrape(port)
    assert value(after, "encore_step_seconds_count") - value(before, "encore_step_seconds_count") >= 8
