"""Broker factories: RabbitMQ for production, the stub broker for embedded mode."""

from __future__ import annotations

import threading

import dramatiq
from dramatiq.brokers.stub import StubBroker

from .settings import EncoreSettings

_shared: dict[tuple[str, str], dramatiq.Broker] = {}
_shared_lock = threading.Lock()


def make_broker(settings: EncoreSettings) -> dramatiq.Broker:
    """RabbitMQ with publisher confirms (durable queues, persistent messages) or a stub broker.

    ``ENCORE_QUEUE_TYPE=quorum`` makes it a :class:`~.quorum.QuorumRabbitmqBroker` (else an
    :class:`~.quorum.EncoreRabbitmqBroker`: dramatiq's classic queues, clearer errors); a
    ``;``-separated ``ENCORE_BROKER_URL`` lists several nodes, tried in order (dramatiq's).

    One RabbitMQ broker per URL per process: the ``dramatiq`` CLI serves a single global
    broker, so several modules that each call ``Encore()`` must declare their tasks on the
    same one (otherwise a worker importing two of them rejects one module's messages).
    """
    if settings.broker_url is None:
        return StubBroker()
    from .quorum import EncoreRabbitmqBroker, QuorumRabbitmqBroker

    kind = QuorumRabbitmqBroker if settings.queue_type == "quorum" else EncoreRabbitmqBroker
    key = (settings.broker_url, settings.queue_type)
    with _shared_lock:
        broker = _shared.get(key)
        if broker is None:
            broker = _shared[key] = kind(url=settings.broker_url, confirm_delivery=True)
        return broker
