"""Workflows on a 3-node RabbitMQ cluster with quorum queues survive the stop of one node.

The cluster (tests/support/rabbit_cluster.py) runs on loopback ports of its own. Two real
``dramatiq`` worker processes serve ``tests/integration/wf_app.py`` with
``ENCORE_QUEUE_TYPE=quorum``, each given every node's URL (``ENCORE_BROKER_URL=a;b;c``) in
another order, so they connect to different nodes: worker 0 to A, worker 1 to B. The test
process publishes through A.

Node B is the one stopped, mid-run: the test declares the queues through B first, so B
holds the leader of the queue, its delay queue and its dead-letter queue (quorum leaders are
placed on the declaring client's node) and worker 1's connections. Its stop makes the
queues elect a leader among A and C (2 of 3 members: still a majority) and worker 1
reconnect to C, the next URL of its list; its unacked messages are redelivered. A stays up
because it is the test's own publishing connection: that failover path is dramatiq's
enqueue retry, already exercised by the workers' own sends (children, results).

Every workflow, started before or after the stop, completes with the result a crash-free
run gives (each derived value from its seed), every step ran at least once (executions
counted in Redis by the step itself, as in test_worker_processes.py) and each workflow's
journal records each value once: duplicates are at-least-once executions, never results.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import dramatiq
import pytest

from dramatiq_encore.broker_config import QuorumRabbitmqBroker
from tests.integration.test_worker_processes import _expected_values, _recorded
from tests.integration.workers import ROOT, WorkerProcess, stop_all, wait_until
from tests.support.rabbit import consumer_count
from tests.support.rabbit_cluster import Cluster, rabbit_cluster, require_rabbitmq_server
from tests.support.services import require_real_services

pytestmark = [pytest.mark.realservices, pytest.mark.slow]

MODULE = "tests.integration.wf_app"
BEFORE, AFTER, STEPS, DELAY = 12, 4, 6, 0.15


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    require_rabbitmq_server()
    require_real_services()  # Redis holds the workflows' state
    with rabbit_cluster(tmp_path / "rabbit", timeout=120) as started:
        yield started


def _load_app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """wf_app.py once more, under a name of its own, configured from ``env`` as the workers are
    (a module imported earlier in the session keeps its own broker)."""
    for key, value in env.items():
        if key.startswith("ENCORE_"):
            monkeypatch.setenv(key, value)
    name = f"wf_app_cluster_{uuid.uuid4().hex[:6]}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests/integration/wf_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cluster_app(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, dict[str, str]]]:
    _, redis_url = require_real_services()
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "ENCORE_QUEUE_TYPE": "quorum",
        "ENCORE_BROKER_URL": cluster.urls(first=0),
        "ENCORE_STATE_URL": redis_url,
        "ENCORE_KEY_PREFIX": f"encore-cluster-{tag}",
        "ENCORE_TEST_QUEUE": f"encore_cluster_{tag}",
        "PYTHONPATH": str(ROOT),
    }
    # Declared through node B: B holds the queues' leaders (see the module docstring).
    seed = QuorumRabbitmqBroker(url=cluster.nodes[1].url, confirm_delivery=True)
    seed.declare_queue(env["ENCORE_TEST_QUEUE"], ensure=True)
    seed.close()
    previous = dramatiq.get_broker()
    module = _load_app(env, monkeypatch)
    try:
        yield module, env
    finally:
        dramatiq.set_broker(previous)
        client = module.app.state.client
        for key in client.scan_iter(match=f"{env['ENCORE_KEY_PREFIX']}:*", count=1000):
            client.delete(key)
        module.app.close()
        module.app.broker.close()


def _executions(module: ModuleType) -> dict[str, int]:
    raw = module.app.state.client.hgetall(f"{module._prefix}:executions")
    return {k.decode() if isinstance(k, bytes) else str(k): int(v) for k, v in raw.items()}


def _check(module: ModuleType, key: str, invocation_id: str, result: dict[str, Any]) -> None:
    """The crash-free result, each value recorded once, each step run at least once."""
    meta = module.app.state.get_meta(invocation_id)
    randoms, uuids = _expected_values(meta.record.seed, STEPS)
    assert result["random"] == randoms and result["uuid"] == uuids
    assert [step["i"] for step in result["steps"]] == list(range(STEPS))
    recorded = _recorded(module.app, invocation_id)
    assert recorded["random"] == randoms and recorded["uuid"] == uuids
    executions = _executions(module)
    assert all(executions.get(f"{key}:{i}", 0) >= 1 for i in range(STEPS))


def test_workflows_complete_when_a_node_stops_mid_run(
    cluster: Cluster, cluster_app: tuple[ModuleType, dict[str, str]], tmp_path: Path
) -> None:
    module, env = cluster_app
    a, b, c = cluster.nodes
    queue = env["ENCORE_TEST_QUEUE"]
    queues = cluster.queues(a)
    assert {queues[n]["type"] for n in (queue, f"{queue}.DQ", f"{queue}.XQ")} == {"quorum"}
    assert queues[queue]["leader"] == b.name

    group = [
        WorkerProcess(MODULE, {**env, "ENCORE_BROKER_URL": cluster.urls(first=n)}, tmp_path / f"worker-{n}.log")
        for n in (0, 1)
    ]
    for worker in group:
        worker.start()
    try:
        assert wait_until(lambda: consumer_count(a.url, queue) >= 2, timeout=60), "workers did not consume"
        # Given workflows in flight on both workers
        keys = [f"w{i}-{uuid.uuid4().hex[:4]}" for i in range(BEFORE + AFTER)]
        handles = {key: module.ten_steps.send(key, STEPS, DELAY) for key in keys[:BEFORE]}
        total = BEFORE * STEPS
        assert wait_until(lambda: sum(_executions(module).values()) >= total // 3, timeout=60)
        ports = cluster.client_ports(a)
        assert b.port in ports and c.port not in ports  # worker 1 on B, the others on A

        # When node B (queue leaders, worker 1's connections) stops
        cluster.stop_node(b)
        assert wait_until(lambda: cluster.queues(a)[queue]["leader"] in (a.name, c.name), timeout=30)
        # Then worker 1 reconnects to C: the queue has two consumers again
        assert wait_until(lambda: consumer_count(a.url, queue) >= 2, timeout=30), "worker 1 did not reconnect"
        assert c.port in cluster.client_ports(a)
        assert "Consumer encountered a connection error" in group[1].log.read_text(errors="replace")
        handles.update({key: module.ten_steps.send(key, STEPS, DELAY) for key in keys[BEFORE:]})

        # And every workflow completes with its crash-free result
        results = {key: handle.wait(timeout=90) for key, handle in handles.items()}
        for key, result in results.items():
            _check(module, key, handles[key].invocation_id, result)
        assert all(worker.proc is not None and worker.proc.poll() is None for worker in group)
        executions = _executions(module)
        print(f"{len(keys) * STEPS} steps, {sum(executions.values()) - len(executions)} ran twice or more")
    finally:
        stop_all(group)
