"""RabbitMQ seen from outside the package, with pika directly: what any other producer sees."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from pika.adapters.blocking_connection import BlockingChannel


# --8<-- [start:publish] (docs/how-to/other-languages.md includes channel and publish)
@contextlib.contextmanager
def channel(url: str) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def publish(url: str, queue: str, body: bytes) -> None:
    """A persistent JSON message on the default exchange, confirmed by the broker."""
    with channel(url) as ch:
        ch.confirm_delivery()
        ch.basic_publish("", queue, body, pika.BasicProperties(content_type="application/json", delivery_mode=2))
# --8<-- [end:publish]


def dead_letters(url: str, queue: str) -> int:
    """Messages in ``queue``'s dead-letter queue (``<queue>.XQ``)."""
    with channel(url) as ch:
        return int(ch.queue_declare(f"{queue}.XQ", passive=True).method.message_count)


def dead_letter_bodies(url: str, queue: str) -> list[bytes]:
    """The bodies in ``queue``'s dead-letter queue, left there (read without acking)."""
    bodies: list[bytes] = []
    with channel(url) as ch:
        while True:
            method, _, body = ch.basic_get(f"{queue}.XQ", auto_ack=False)
            if method is None:
                return bodies  # closing the channel puts every message back
            bodies.append(body)


def consumer_count(url: str, queue: str) -> int:
    """Consumers on ``queue`` (0 while RabbitMQ or the queue is not there yet)."""
    try:
        with channel(url) as ch:
            return int(ch.queue_declare(queue, passive=True).method.consumer_count)
    except Exception:
        return 0


def delete_queues(url: str, queue: str) -> None:
    """``queue`` and its dramatiq delay and dead-letter queues."""
    with channel(url) as ch:
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            ch.queue_delete(name)


def dramatiq_arguments(queue: str) -> dict[str, Any]:
    """The arguments dramatiq declares ``queue`` with (a name ending in .XQ is a dead-letter queue)."""
    if queue.endswith(".XQ"):
        return {"x-message-ttl": DEAD_MESSAGE_TTL}
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue.removesuffix('.DQ')}.XQ"}


def is_quorum(url: str, queue: str) -> bool:
    """Whether the server holds ``queue`` as a quorum queue. AMQP has no query for a queue's
    type: this declares the existing queue again with dramatiq's arguments plus
    ``x-queue-type: quorum``, which RabbitMQ accepts only when they are equivalent to the
    queue's (a classic queue refuses: "received 'quorum' but current is none")."""
    with channel(url) as ch:
        ch.queue_declare(queue, passive=True)  # raises if it does not exist (never created here)
    try:
        with channel(url) as ch:
            ch.queue_declare(queue, durable=True, arguments={**dramatiq_arguments(queue), "x-queue-type": "quorum"})
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 406 and "x-queue-type" in exc.reply_text:
            return False
        raise
    return True
