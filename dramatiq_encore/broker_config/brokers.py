"""Broker factories: RabbitMQ for production, the stub broker for embedded mode."""

from __future__ import annotations

import threading

import dramatiq
from dramatiq.brokers.stub import StubBroker

from .settings import EncoreSettings

_shared: dict[str, dramatiq.Broker] = {}
_shared_lock = threading.Lock()


def make_broker(settings: EncoreSettings) -> dramatiq.Broker:
    """RabbitMQ with publisher confirms (durable queues, persistent messages) or a stub broker.

    One RabbitMQ broker per URL per process: the ``dramatiq`` CLI serves a single global
    broker, so several modules that each call ``Encore()`` must declare their tasks on the
    same one (otherwise a worker importing two of them rejects one module's messages).
    """
    if settings.broker_url is None:
        return StubBroker()
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    with _shared_lock:
        broker = _shared.get(settings.broker_url)
        if broker is None:
            broker = _shared[settings.broker_url] = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
        return broker
