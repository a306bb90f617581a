"""ENCORE_QUEUE_TYPE: the arguments of every queue encore declares, and the refusal's error.

The channel here records declarations instead of sending them (no server in a unit test);
tests/integration/test_quorum_queues.py declares the same queues on a real RabbitMQ.
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
import pytest
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker

from dramatiq_encore.broker_config import (
    EncoreRabbitmqBroker,
    EncoreSettings,
    QueueTypeMismatch,
    QuorumRabbitmqBroker,
    load_settings,
    make_broker,
    redact,
)
from dramatiq_encore.errors import ConfigurationError

URL = "amqp://guest:guest@127.0.0.1:1/%2F"  # never connected to


class RecordingChannel:
    def __init__(self, refuse: str | None = None) -> None:
        self.declared: dict[str, dict[str, Any]] = {}
        self.refuse = refuse
        self.is_open = False

    def queue_declare(self, queue: str, durable: bool, arguments: dict[str, Any]) -> None:
        if queue == self.refuse:
            raise pika.exceptions.ChannelClosedByBroker(
                406, f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{queue}'"
            )
        assert durable
        self.declared[queue] = arguments


def _declare(broker: RabbitmqBroker, queue: str, channel: RecordingChannel) -> dict[str, dict[str, Any]]:
    broker.state.channel = channel
    broker.channels.add(channel)  # type: ignore[arg-type]
    broker.declare_queue(queue, ensure=True)
    return channel.declared


def test_quorum_declares_the_queue_its_delay_and_its_dead_letter_queue_as_quorum() -> None:
    declared = _declare(QuorumRabbitmqBroker(url=URL, confirm_delivery=True), "orders", RecordingChannel())
    dead_letter = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.XQ", "x-queue-type": "quorum"}
    assert declared == {
        "orders": dead_letter,
        "orders.DQ": dead_letter,
        "orders.XQ": {"x-message-ttl": DEAD_MESSAGE_TTL, "x-queue-type": "quorum"},
    }


def test_classic_declares_what_dramatiq_declares() -> None:
    mine = _declare(EncoreRabbitmqBroker(url=URL, confirm_delivery=True), "orders", RecordingChannel())
    theirs = RecordingChannel()
    plain = RabbitmqBroker(url=URL)
    plain.state.channel = theirs
    plain._declare_queue("orders")  # type: ignore[no-untyped-call]
    plain._declare_dq_queue("orders")  # type: ignore[no-untyped-call]
    plain._declare_xq_queue("orders")  # type: ignore[no-untyped-call]
    assert mine == theirs.declared and "x-queue-type" not in str(mine)


def test_a_refused_declaration_names_the_queue_the_type_and_what_to_do() -> None:
    broker = QuorumRabbitmqBroker(url=URL, confirm_delivery=True)
    channel = RecordingChannel(refuse="orders.DQ")
    with pytest.raises(QueueTypeMismatch) as err:
        _declare(broker, "orders", channel)
    message = str(err.value)
    for part in ("'orders.DQ'", "as a quorum queue", "PRECONDITION_FAILED", "delete_queue orders.DQ",
                 "unset ENCORE_QUEUE_TYPE"):
        assert part in message
    assert isinstance(err.value, ConfigurationError)
    assert getattr(broker.state, "channel", None) is None  # RabbitMQ closed it: the next call opens another
    assert "orders" in broker.queues_pending  # declared again on the next send


def test_classic_refused_says_to_set_quorum() -> None:
    with pytest.raises(QueueTypeMismatch, match="set ENCORE_QUEUE_TYPE=quorum to keep quorum queues"):
        _declare(EncoreRabbitmqBroker(url=URL), "orders", RecordingChannel(refuse="orders"))


def test_quorum_refuses_max_priority() -> None:
    with pytest.raises(ConfigurationError, match="x-max-priority"):
        QuorumRabbitmqBroker(url=URL, max_priority=5)


def test_queue_type_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCORE_QUEUE_TYPE", "stream")
    with pytest.raises(ConfigurationError, match="ENCORE_QUEUE_TYPE: Input should be 'classic' or 'quorum'"):
        load_settings()
    monkeypatch.setenv("ENCORE_QUEUE_TYPE", "quorum")
    assert load_settings().queue_type == "quorum"
    monkeypatch.delenv("ENCORE_QUEUE_TYPE")
    assert load_settings().queue_type == "classic"


def test_make_broker_builds_the_type_asked_for_once_per_url() -> None:
    quorum = make_broker(EncoreSettings(broker_url=URL, queue_type="quorum"))
    classic = make_broker(EncoreSettings(broker_url=URL))
    assert type(quorum) is QuorumRabbitmqBroker and type(classic) is EncoreRabbitmqBroker
    assert make_broker(EncoreSettings(broker_url=URL, queue_type="quorum")) is quorum


def test_several_broker_urls_are_checked_and_redacted_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    urls = "amqp://u:secret@a:5672/%2F;amqp://u:secret@b:5672/%2F"
    monkeypatch.setenv("ENCORE_BROKER_URL", urls)
    assert load_settings().broker_url == urls
    assert redact(urls) == "amqp://u:***@a:5672/%2F;amqp://u:***@b:5672/%2F"
    broker = make_broker(EncoreSettings(broker_url=urls))
    assert [p.host for p in broker.parameters] == ["a", "b"]  # type: ignore[attr-defined]
    monkeypatch.setenv("ENCORE_BROKER_URL", "amqp://a;http://u:secret@b")
    with pytest.raises(ConfigurationError, match="ENCORE_BROKER_URL") as err:
        load_settings()
    assert "secret" not in str(err.value)
