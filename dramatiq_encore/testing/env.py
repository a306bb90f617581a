"""``EncoreEnv``: an isolated embedded world for tests (stub broker, memory state, in-process
worker, virtual clock), and the apps that run in it."""

from __future__ import annotations

import copy
import threading
from typing import Any

import dramatiq

from ..actors.runtime import Runtime
from ..actors.task import Task
from ..app import Encore
from ..broker_config import EncoreSettings, load_settings
from ..broker_config.embedded import EmbeddedWorker
from ..broker_config.middleware import install
from ..state.backends.memory import MemoryState
from ..state.models import FINISHED, InvocationMeta
from .broker import KitBroker
from .clock import VirtualClock
from .driver import Driver

#: What a kit app never takes from the settings it is given: it reaches no server.
_OFFLINE: dict[str, Any] = {"broker_url": None, "state_url": None, "metrics_port": None}


class KitState(MemoryState):
    """Memory state whose ``wait_finished`` (``Invocation.wait``) lets the driver skip time."""

    driver: Driver | None = None

    def wait_finished(self, invocation_id: str, timeout: float | None) -> InvocationMeta | None:
        if self.driver is None:
            return super().wait_finished(invocation_id, timeout)
        with self.driver.waiting(lambda: self.finished(invocation_id)):
            return super().wait_finished(invocation_id, timeout)

    def finished(self, invocation_id: str) -> bool:
        meta = self.get_meta(invocation_id)
        return meta.status in FINISHED if meta is not None else self.lost_reason(invocation_id) is not None


def _copy_task(app: Encore, task: Task[Any, Any]) -> None:
    """``task`` declared on ``app``: the same function and options, its actor on app's broker."""
    twin = copy.copy(task)
    twin._app = app
    actor = task.actor
    twin.actor = dramatiq.Actor(
        twin._entry,
        broker=app.broker,
        actor_name=actor.actor_name,
        queue_name=actor.queue_name,
        priority=actor.priority,
        options=dict(actor.options),
    )
    app.tasks[twin.name] = twin


class _Binding:
    """What :meth:`EncoreEnv.bind` changed on an app, to put back."""

    FIELDS = ("broker", "state", "clock", "settings", "runtime", "_worker", "embedded")

    def __init__(self, app: Encore) -> None:
        self.app = app
        self.saved = {name: getattr(app, name) for name in self.FIELDS}
        self.actors = [(actor, actor.broker) for actor in app.broker.actors.values()]

    def restore(self) -> None:
        for name, value in self.saved.items():
            setattr(self.app, name, value)
        for actor, broker in self.actors:
            actor.broker = broker


class EncoreEnv:
    """A stub broker, a memory state, an in-process worker (started by the first send) and a
    virtual clock, for one test. ``skip_time``: timers, signal-wait timeouts, step deadlines
    and retry backoffs fire as soon as nothing else can run while a caller waits (see
    :class:`~.driver.Driver`), and ``wf.utc_now()`` moves on by the time skipped.

    >>> with EncoreEnv(skip_time=True) as env:
    ...     app = env.app()            # a fresh app, or env.bind(my_app) / env.clone(my_app)
    """

    def __init__(self, *, skip_time: bool = False) -> None:
        self.clock = VirtualClock()
        self.broker = KitBroker(self.clock)
        self.state = KitState(clock=self.clock.time)
        self.driver = Driver(self.broker, self.state)
        self.broker.skip_time = skip_time
        self.state.driver = self.driver
        self.worker = EmbeddedWorker(self.broker)
        self._apps: list[Encore] = []
        self._bindings: list[_Binding] = []
        self._lock = threading.Lock()
        self.closed = False

    @property
    def skip_time(self) -> bool:
        """Whether time skips in this environment (the broker, which holds delayed messages, owns it)."""
        return self.broker.skip_time

    @skip_time.setter
    def skip_time(self, value: bool) -> None:
        self.broker.skip_time = value

    def app(self, *, settings: EncoreSettings | None = None, default_queue: str = "default") -> Encore:
        """A fresh app in this environment: declare tasks on it, then send."""
        offline = (settings or load_settings()).model_copy(update=_OFFLINE)
        app = Encore(self.broker, self.state, settings=offline, default_queue=default_queue, clock=self.clock)
        app._worker = self.worker
        self._apps.append(app)
        return app

    def clone(self, app: Encore) -> Encore:
        """A copy of ``app`` in this environment: its tasks (and the plain dramatiq actors on
        its broker, say callbacks) declared again here; ``app`` itself is left as it is. Code
        that calls ``app`` itself (``some_task.send``, ``app.signal``) still reaches ``app``:
        :meth:`bind` it instead."""
        twin = self.app(settings=app.settings, default_queue=app.default_queue)
        for task in app.tasks.values():
            _copy_task(twin, task)
        for name, actor in app.broker.actors.items():
            if name not in self.broker.actors and not isinstance(getattr(actor.fn, "__self__", None), Task):
                dramatiq.Actor(
                    actor.fn,
                    broker=self.broker,
                    actor_name=name,
                    queue_name=actor.queue_name,
                    priority=actor.priority,
                    options=dict(actor.options),
                )
        return twin

    def bind(self, app: Encore) -> Encore:
        """Rebind ``app`` (say a module's ``app = Encore()``) to this environment until
        :meth:`close`: its tasks' ``send``, ``app.signal``, ``app.describe``... all use the stub
        broker and the memory state, and every actor declared on its broker moves here."""
        binding = _Binding(app)
        app.broker, app.state, app.clock = self.broker, self.state, self.clock
        app.settings = app.settings.model_copy(update=_OFFLINE)
        install(self.broker)
        for actor, _ in binding.actors:
            actor.broker = self.broker
            self.broker.declare_actor(actor)
        app.runtime = Runtime(app)
        app._worker, app.embedded = self.worker, True
        self._bindings.append(binding)
        return app

    def close(self) -> None:
        """Stop the worker and the driver; put bound apps back as they were."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.worker.stop()
        self.driver.stop()
        for binding in reversed(self._bindings):
            binding.restore()
        self.broker.close()

    def __enter__(self) -> EncoreEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
