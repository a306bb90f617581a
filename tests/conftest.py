"""Fixtures: every contract test runs on (stub broker, memory state) and (RabbitMQ, Redis).

``app`` is a fresh :class:`Encore` per test with an in-process dramatiq worker started by
``app_worker`` once the test has declared its tasks. Real-service parameters get their
own queues (flushed) and their own Redis key prefix (deleted afterwards).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from dramatiq_encore import Encore
from dramatiq_encore.broker_config import EncoreSettings
from dramatiq_encore.broker_config.embedded import start_time_limits
from dramatiq_encore.state import MemoryState
from tests.support.redis_cluster import redis_cluster, require_redis_server
from tests.support.services import require_real_services, stop_containers

BACKENDS = ["memory", "redis"]
# The state backends' fixtures (state, make_state, make_redis), for the state-level tests;
# pytester, for the test of the testing kit's plugin.
pytest_plugins = ["tests.integration.state_support", "pytester"]


class Harness:
    """An app plus the worker that serves it; tests declare tasks, then call ``start()``."""

    def __init__(self, kind: str, app: Encore) -> None:
        self.kind = kind
        self.app = app
        self._worker: dramatiq.Worker | None = None

    def start(self, threads: int = 8) -> Encore:
        if self._worker is None:
            if self.kind == "redis":
                for queue in self.app.broker.get_declared_queues():
                    self.app.broker.declare_queue(queue, ensure=True)  # as a booted worker would
                    self.app.broker.flush(queue)
            start_time_limits(self.app.broker)
            self._worker = dramatiq.Worker(self.app.broker, worker_threads=threads, worker_timeout=20)
            self._worker.start()
        return self.app

    @property
    def worker(self) -> dramatiq.Worker:
        assert self._worker is not None, "start() the harness first"
        return self._worker

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout=10_000)
            self._worker = None


def make_app(kind: str, prefix: str, state_url: str | None = None) -> Encore:
    settings = EncoreSettings(key_prefix=prefix)
    if kind == "memory":
        return Encore(broker=StubBroker(), state=MemoryState(), settings=settings)
    # Its own queue: concurrent test runs on one RabbitMQ must not consume each other's messages.
    amqp, redis = require_real_services()
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from dramatiq_encore.state import RedisState

    broker = RabbitmqBroker(url=amqp, confirm_delivery=True)
    state = RedisState.from_url(state_url or redis, prefix=prefix)
    return Encore(broker=broker, state=state, settings=settings, default_queue=f"q-{prefix}")


def _cleanup_redis(app: Encore, prefix: str) -> None:
    client: Any = getattr(app.state, "client", None)
    if client is not None:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            for key in keys:
                client.delete(key)


def _delete_queues(app: Encore) -> None:
    channel = app.broker.channel
    for queue in app.broker.get_declared_queues():
        if queue.startswith("q-encore-test-"):
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                channel.queue_delete(name)
        else:
            app.broker.flush(queue)


@contextlib.contextmanager
def running_harness(kind: str, state_url: str | None = None) -> Iterator[Harness]:
    prefix = f"encore-test-{uuid.uuid4().hex[:10]}"
    app = make_app(kind, prefix, state_url)
    h = Harness(kind, app)
    try:
        yield h
    finally:
        h.stop()
        if kind != "memory":
            _delete_queues(app)
            _cleanup_redis(app, prefix)
        app.close()
        app.broker.close()


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with running_harness(request.param) as h:
        yield h


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-node Redis Cluster on loopback ports, for the whole session."""
    require_real_services()
    require_redis_server()
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


@pytest.fixture(params=[*BACKENDS, "cluster"])
def scenario_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The reference scenarios also run with state on a Redis Cluster (RabbitMQ broker)."""
    url = request.getfixturevalue("cluster_url") if request.param == "cluster" else None
    with running_harness("redis" if url else request.param, state_url=url) as h:
        yield h


@pytest.fixture
def real_harness() -> Iterator[Harness]:
    """RabbitMQ + Redis only: for what only a real broker or store can receive."""
    with running_harness("redis") as h:
        yield h


@pytest.fixture
def app(harness: Harness) -> Encore:
    return harness.app


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_containers()
