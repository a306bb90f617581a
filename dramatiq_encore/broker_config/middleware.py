"""The middleware every broker running encore tasks gets: it hands the actor its message."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from .encoder import install_encoder

_message: ContextVar[MessageProxy | None] = ContextVar("encore_current_message", default=None)


class EncoreMiddleware(Middleware):
    """Exposes the message being processed to the encore actor that processes it.

    State is never written from here: dramatiq's ``emit_after`` swallows exceptions, so all
    writes happen inside the actor, before the message is acked.
    """

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        _message.set(message)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        _message.set(None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        _message.set(None)


def current_message() -> MessageProxy | None:
    return _message.get()


def install(broker: dramatiq.Broker) -> None:
    """Add the encore middleware to ``broker`` once (a user's broker keeps its own middleware),
    and check every message body the process decodes (see :mod:`.encoder`)."""
    install_encoder()
    if not any(isinstance(m, EncoreMiddleware) for m in broker.middleware):
        broker.add_middleware(EncoreMiddleware())
