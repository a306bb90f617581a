"""The middleware every broker running encore tasks gets: it hands the actor its message, and
serves the app's metrics in the processes that run a worker (``ENCORE_METRICS_PORT``)."""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread, set_event_loop_thread
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from dramatiq.middleware.asyncio import AsyncIO

from .encoder import install_encoder

if TYPE_CHECKING:
    from ..actors.poller import TimerPoller
    from ..app import Encore

logger = logging.getLogger(__name__)

_message: ContextVar[MessageProxy | None] = ContextVar("encore_current_message", default=None)


class EncoreMiddleware(Middleware):
    """Exposes the message being processed to the encore actor that processes it.

    State is never written from here: dramatiq's ``emit_after`` swallows exceptions, so all
    writes happen inside the actor, before the message is acked.

    A worker's boot starts the Prometheus server of the apps on this broker that set
    ``metrics_port`` (:mod:`dramatiq_encore.observe.metrics`), in the worker's process: a
    ``dramatiq`` CLI worker process, an embedded or an in-process worker. Importing the
    app's module (``encore list``, a producer) binds no port.
    """

    def __init__(self) -> None:
        #: The apps whose tasks this broker runs (see :func:`attach`).
        self.apps: list[Encore] = []
        self._pollers: dict[int, TimerPoller] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from ..actors.poller import TimerPoller, polled

        for app in self.apps:
            if polled(app):  # this process wakes due timers too (see actors/poller.py)
                self._pollers.setdefault(id(app), TimerPoller(app)).start()
        for app in self._metered():
            try:
                from ..observe import metrics  # imports prometheus_client: only now, never at import

                metrics.serve(app, app.settings.metrics_port or 0)
            except Exception:
                logger.exception("could not serve Prometheus metrics; the worker runs without them")

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        for poller in self._pollers.values():
            poller.stop()
        self._pollers.clear()
        for app in self._metered():
            try:
                from ..observe import metrics

                metrics.release(app)
            except Exception:
                logger.exception("could not stop serving Prometheus metrics")

    def _metered(self) -> list[Encore]:
        return [app for app in self.apps if app.settings.metrics_port is not None]

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        _message.set(message)

    def before_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        # A message for a task this worker does not declare is dead-lettered (dramatiq's
        # consumer does it on receipt): say why, in the store, where `encore show` looks.
        if message.actor_name not in broker.actors and self.apps:
            from ..operate.strays import record_stray

            record_stray(self.apps[0], message)

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


def attach(app: Encore) -> None:
    """Let the broker's encore middleware know ``app`` (its runtime calls this once)."""
    for middleware in app.broker.middleware:
        if isinstance(middleware, EncoreMiddleware) and app not in middleware.apps:
            middleware.apps.append(app)


def install(broker: dramatiq.Broker) -> None:
    """Add the encore middleware to ``broker`` once (a user's broker keeps its own middleware),
    and check every message body the process decodes (see :mod:`.encoder`)."""
    install_encoder()
    if not any(isinstance(m, EncoreMiddleware) for m in broker.middleware):
        broker.add_middleware(EncoreMiddleware())


class EncoreAsyncIO(AsyncIO):
    """Dramatiq's ``AsyncIO`` middleware, whose event-loop thread is a daemon thread.

    The one change: dramatiq's loop thread would keep an embedded app's process alive at exit
    (Python joins non-daemon threads before it runs ``atexit``, where the embedded worker
    stops), so a script that never calls ``app.close()`` would hang. A ``dramatiq`` CLI worker
    stops the loop at its shutdown either way (``after_worker_shutdown``, inherited).
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        thread = EventLoopThread(self.logger)
        thread.daemon = True
        thread.start(timeout=1.0)
        set_event_loop_thread(thread)


def install_asyncio(broker: dramatiq.Broker) -> None:
    """Give ``broker`` dramatiq's AsyncIO middleware (the first async task does), unless it has
    one: the event loop of every async pass of a worker on it (see actors/coroutines.py)."""
    if not any(isinstance(m, AsyncIO) for m in broker.middleware):
        broker.add_middleware(EncoreAsyncIO())


def dramatiq_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of dramatiq's AsyncIO middleware in this process, once a worker booted it."""
    thread = get_event_loop_thread()
    return None if thread is None else thread.loop
