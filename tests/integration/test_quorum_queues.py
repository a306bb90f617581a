"""ENCORE_QUEUE_TYPE=quorum on the local RabbitMQ: a workflow end to end, and the refusal of
a queue that already exists as classic. Each test has queue names of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from dramatiq_encore import Encore
from dramatiq_encore.broker_config import EncoreSettings, QueueTypeMismatch, QuorumRabbitmqBroker
from tests.support.rabbit import channel, is_quorum
from tests.support.services import require_real_services

pytestmark = pytest.mark.realservices


def _delete(url: str, queue: str) -> None:
    with channel(url) as ch:
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            ch.queue_delete(name)


@pytest.fixture
def quorum_app() -> Iterator[tuple[Encore, str]]:
    """An app configured as ENCORE_QUEUE_TYPE=quorum would configure it, on a fresh queue."""
    amqp, redis = require_real_services()
    prefix = f"encore-test-{uuid.uuid4().hex[:10]}"
    queue = f"q-{prefix}"
    previous = dramatiq.get_broker()
    app = Encore(
        settings=EncoreSettings(broker_url=amqp, state_url=redis, key_prefix=prefix, queue_type="quorum"),
        default_queue=queue,
    )
    try:
        yield app, queue
    finally:
        dramatiq.set_broker(previous)
        _delete(amqp, queue)
        client: Any = app.state.client  # type: ignore[attr-defined]
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        app.close()


def test_a_workflow_runs_end_to_end_on_quorum_queues(quorum_app: tuple[Encore, str]) -> None:
    app, queue = quorum_app
    assert isinstance(app.broker, QuorumRabbitmqBroker)
    attempts: list[int] = []

    @app.task(min_backoff=20, max_backoff=40)
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails: its retry is a delayed message, on the .DQ queue")
        return n * 2

    @app.task
    def parent(n: int) -> dict[str, Any]:
        first = parent.wf.execute_task(flaky, n).result
        parent.wf.sleep(0.2)
        return {"doubled": first, "token": parent.wf.uuid()}

    for name in app.broker.get_declared_queues():
        app.broker.declare_queue(name, ensure=True)
    worker = dramatiq.Worker(app.broker, worker_threads=4, worker_timeout=20)
    worker.start()
    try:
        result = parent.send(21).wait(timeout=60)
    finally:
        worker.stop(timeout=10_000)

    assert result["doubled"] == 42 and len(result["token"]) == 36
    assert attempts == [21, 21]
    amqp = app.settings.broker_url
    assert amqp is not None
    assert [is_quorum(amqp, name) for name in (queue, f"{queue}.DQ", f"{queue}.XQ")] == [True, True, True]


def test_a_classic_queue_of_the_same_name_is_refused_with_what_to_do() -> None:
    amqp, _ = require_real_services()
    queue = f"q-encore-test-{uuid.uuid4().hex[:10]}"
    RabbitmqBroker(url=amqp, confirm_delivery=True).declare_queue(queue, ensure=True)  # classic, as before
    broker = QuorumRabbitmqBroker(url=amqp, confirm_delivery=True)
    try:
        with pytest.raises(QueueTypeMismatch) as err:
            broker.declare_queue(queue, ensure=True)
        message = str(err.value)
        assert f"queue {queue!r} as a quorum queue" in message and "PRECONDITION_FAILED" in message
        assert f"rabbitmqctl delete_queue {queue}" in message and "unset ENCORE_QUEUE_TYPE" in message
        assert not is_quorum(amqp, queue)

        # Once the classic queues are deleted, the same broker (a new channel) declares quorum ones.
        _delete(amqp, queue)
        broker.declare_queue(queue, ensure=True)
        assert is_quorum(amqp, queue) and is_quorum(amqp, f"{queue}.XQ")
    finally:
        _delete(amqp, queue)
        broker.close()
