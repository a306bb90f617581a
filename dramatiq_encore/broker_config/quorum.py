"""Quorum queues: dramatiq's RabbitMQ broker with every queue it declares of type quorum.

Dramatiq declares three queues per queue name: ``<q>`` and its delay queue ``<q>.DQ``
(both dead-lettering to ``<q>.XQ``) and the dead-letter queue ``<q>.XQ`` (a 7-day
``x-message-ttl``). A quorum queue is replicated on a majority of a cluster's nodes and
keeps working when a minority stops. RabbitMQ 3.10 accepts ``x-dead-letter-*`` and
``x-message-ttl`` on quorum queues but not ``x-max-priority`` (priorities came in 4.0),
so ``max_priority`` is refused here.

The subclasses override dramatiq's own declaration seams (``_build_queue_arguments`` and
``_declare_*``) instead of declaring queues around it: every path that declares a queue
(a send, a consumer, ``get_queue_message_counts``) then declares the same queue.
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from ..errors import ConfigurationError

QUEUE_TYPE = "quorum"
PRECONDITION_FAILED = 406


class QueueTypeMismatch(ConfigurationError):
    """RabbitMQ refused to declare a queue as asked: one of that name exists with other arguments."""

    def __init__(self, queue: str, queue_type: str, reply: str) -> None:
        self.queue = queue
        self.queue_type = queue_type
        other = "classic" if queue_type == QUEUE_TYPE else QUEUE_TYPE
        keep = "unset ENCORE_QUEUE_TYPE" if other == "classic" else "set ENCORE_QUEUE_TYPE=quorum"
        super().__init__(
            f"RabbitMQ refused to declare queue {queue!r} as a {queue_type} queue ({reply}): a queue of "
            f"that name already exists with other arguments, typically a {other} queue declared with "
            f"another ENCORE_QUEUE_TYPE. Drain it and delete it (rabbitmqctl delete_queue {queue}; encore "
            f"declares it again as {queue_type}), move its messages to a {queue_type} queue of another name "
            f"(a shovel), or {keep} to keep {other} queues."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.queue, self.queue_type, str(self)))


class EncoreRabbitmqBroker(RabbitmqBroker):
    """dramatiq's :class:`~dramatiq.brokers.rabbitmq.RabbitmqBroker`, declaring the same classic
    queues, whose refused declarations raise :class:`QueueTypeMismatch` (naming the queue and
    what to do) instead of dramatiq's ``ConnectionClosed``. ``make_broker`` builds this one
    by default."""

    queue_type = "classic"

    def _type_argument(self) -> dict[str, Any]:
        return {} if self.queue_type == "classic" else {"x-queue-type": self.queue_type}

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        return {**arguments, **self._type_argument()}

    def _declare_queue(self, queue_name: str) -> Any:
        return self._declare(queue_name, self._build_queue_arguments(queue_name))

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return self._declare(dq_name(queue_name), self._build_queue_arguments(queue_name))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        # A static TTL, as dramatiq's: messages expire head-first.
        return self._declare(xq_name(queue_name), {"x-message-ttl": DEAD_MESSAGE_TTL, **self._type_argument()})

    def _declare(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return self.channel.queue_declare(queue=name, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != PRECONDITION_FAILED:
                raise
            # RabbitMQ closed the channel: the next caller opens a new one. Not retried as a
            # connection error by dramatiq: a second declaration would fail the same way.
            del self.channel
            raise QueueTypeMismatch(name, self.queue_type, exc.reply_text) from None


class QuorumRabbitmqBroker(EncoreRabbitmqBroker):
    """A :class:`~dramatiq.brokers.rabbitmq.RabbitmqBroker` whose queues are quorum queues.

    Takes the same arguments (``url`` may list several nodes, ``"amqp://a;amqp://b"``, tried
    in order on every (re)connection), except ``max_priority``: quorum queues have no
    priorities in RabbitMQ 3.10.

    >>> broker = QuorumRabbitmqBroker(url="amqp://guest:guest@rabbit-1;amqp://guest:guest@rabbit-2",
    ...                               confirm_delivery=True)
    >>> app = Encore(broker=broker, state=...)
    """

    queue_type = QUEUE_TYPE

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("max_priority") is not None:
            raise ConfigurationError(
                "max_priority cannot be used with quorum queues: RabbitMQ 3.10 refuses x-max-priority on them "
                "(the dramatiq actor option `priority` still orders messages inside each worker)"
            )
        super().__init__(**kwargs)
