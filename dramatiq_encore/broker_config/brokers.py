"""Broker factories: RabbitMQ for production, the stub broker for embedded mode."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from .settings import EncoreSettings


def make_broker(settings: EncoreSettings) -> dramatiq.Broker:
    """RabbitMQ with publisher confirms (durable queues, persistent messages) or a stub broker."""
    if settings.broker_url is None:
        return StubBroker()
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    return RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
