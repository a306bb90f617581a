"""A producer with publish rights on the broker, forging the engine's own messages.

On RabbitMQ the body goes out through pika, as any other program would send it; on the stub
broker it is enqueued as the same 7-key body. ``dead_lettered`` counts what the worker
rejected on a queue, on either broker.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from dramatiq.brokers.stub import StubBroker

from dramatiq_encore.actors.messages import NUDGES
from tests.conftest import Harness
from tests.support.rabbit import dead_letters, publish
from tests.support.services import amqp_url


def forge(
    harness: Harness, actor: str, envelope: dict[str, Any], args: list[Any] | None = None, nudges: int = 0
) -> str:
    """Publish a message carrying ``envelope`` to ``actor`` on the app's queue; its message id.

    ``nudges`` sets how many times the message looks re-sent already (its budget of re-sends).
    """
    queue = harness.app.default_queue
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": queue,
        "actor_name": actor,
        "args": args or [],
        "kwargs": {},
        "options": {"encore": envelope, **({NUDGES: nudges} if nudges else {})},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    broker = harness.app.broker
    if isinstance(broker, StubBroker):
        broker.queues[queue].put(json.dumps(body).encode())
    else:
        url = amqp_url()
        assert url is not None
        publish(url, queue, json.dumps(body).encode())
    return message_id


def dead_lettered(harness: Harness) -> int:
    queue = harness.app.default_queue
    broker = harness.app.broker
    if isinstance(broker, StubBroker):
        return len(broker.dead_letters_by_queue[queue])
    url = amqp_url()
    assert url is not None
    return dead_letters(url, queue)
