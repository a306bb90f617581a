"""Integration fixtures: two real worker processes on RabbitMQ and Redis."""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.integration.workers import WorkerProcess, stop_all, wait_until
from tests.support.rabbit import consumer_count, delete_queues
from tests.support.services import require_real_services

MODULE = "tests.integration.wf_app"


@pytest.fixture(scope="session")
def it_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    amqp, redis_url = require_real_services()
    env = {
        **os.environ,
        "ENCORE_BROKER_URL": amqp,
        "ENCORE_STATE_URL": redis_url,
        "ENCORE_KEY_PREFIX": f"encore-it-{uuid.uuid4().hex[:8]}",
        # A queue per run: concurrent test runs on one RabbitMQ must not share workers.
        "ENCORE_TEST_QUEUE": f"encore_it_{uuid.uuid4().hex[:8]}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    saved = {k: os.environ.get(k) for k in env if k.startswith("ENCORE_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("ENCORE_")})
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def wf_app(it_env: dict[str, str]) -> Iterator[ModuleType]:
    """The same module the workers import, configured the same way, for sending and reading.

    Imported once per session: its tasks are actors on the process's one RabbitMQ broker.
    """
    module = importlib.import_module(MODULE)
    broker = module.app.broker
    for queue in broker.get_declared_queues():
        broker.flush(queue)
    yield module
    delete_queues(it_env["ENCORE_BROKER_URL"], it_env["ENCORE_TEST_QUEUE"])
    client = module.app.state.client
    for key in client.scan_iter(match=f"{it_env['ENCORE_KEY_PREFIX']}:*", count=1000):
        client.delete(key)


@pytest.fixture
def workers(it_env: dict[str, str], wf_app: ModuleType, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    group = [WorkerProcess(MODULE, it_env, tmp_path / f"worker-{n}.log").start() for n in range(2)]
    # Workers declare their queues when they boot; wait until both consume.
    assert wait_until(lambda: consumer_count(it_env["ENCORE_BROKER_URL"], it_env["ENCORE_TEST_QUEUE"]) >= 2, timeout=30)
    try:
        yield group
    finally:
        stop_all(group)
