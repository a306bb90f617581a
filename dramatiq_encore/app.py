"""``Encore``: binds a broker, a state backend and the task registry."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

import dramatiq
import dramatiq.broker
from dramatiq.brokers.stub import StubBroker

from .actors.runtime import Runtime
from .actors.task import Task
from .broker_config import EncoreSettings, load_settings, make_broker, redact
from .broker_config.embedded import EmbeddedWorker
from .broker_config.middleware import install
from .invocation import Invocation
from .state.backend import StateBackend
from .state.backends.memory import MemoryState

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _make_state(settings: EncoreSettings) -> StateBackend:
    if settings.state_url is None:
        return MemoryState()
    from .state.backends.redis import RedisState

    return RedisState.from_url(settings.state_url, retention=settings.retention, prefix=settings.key_prefix)


class Encore:
    """A dramatiq-encore application.

    >>> app = Encore()                      # ENCORE_* settings, else embedded mode
    >>> app = Encore(broker=my_broker, state=RedisState.from_url("redis://localhost:6379/0"))

    With no ``ENCORE_BROKER_URL`` and no broker given, tasks run embedded: a stub broker
    and an in-process worker that starts on the first ``send``.
    """

    def __init__(
        self,
        broker: dramatiq.Broker | None = None,
        state: StateBackend | None = None,
        *,
        settings: EncoreSettings | None = None,
        default_queue: str = "default",
    ) -> None:
        self.settings = settings or load_settings()
        self.embedded = broker is None and self.settings.broker_url is None
        self.broker = broker if broker is not None else make_broker(self.settings)
        self.state = state if state is not None else _make_state(self.settings)
        install(self.broker)
        if dramatiq.broker.global_broker is None or broker is None:
            # The `dramatiq` CLI runs whatever broker is global after importing the module.
            dramatiq.set_broker(self.broker)
        self.default_queue = default_queue
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.runtime = Runtime(self)
        self._worker = EmbeddedWorker(self.broker) if self.embedded else None

    # -- declaring tasks ------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...
    @overload
    def task(self, fn: None = None, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self, fn: Callable[P, R] | None = None, **options: Any
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Declare a task, bare (``@app.task``) or with options (``@app.task(queue_name=...)``).

        ``force_new_workflow=True`` makes the task start its own child workflow when a
        workflow executes it; every other option is a dramatiq actor option.
        """

        def decorate(function: Callable[P, R]) -> Task[P, R]:
            task = Task(self, function, **{"queue_name": self.default_queue, **options})
            self.tasks[task.name] = task
            return task

        return decorate(fn) if fn is not None else decorate

    def describe_broker(self) -> str:
        """The broker's URL without its password, or its class for a user-built broker."""
        if self.settings.broker_url is not None and not isinstance(self.broker, StubBroker):
            return redact(self.settings.broker_url)
        return type(self.broker).__name__

    # -- handles --------------------------------------------------------------------------
    def get_invocation(self, invocation_id: str) -> Invocation:
        """A handle on any invocation by id; unknown ids read ``pending``."""
        return Invocation(self, invocation_id)

    def get_workflow_data(self, workflow_id: str) -> dict[str, Any]:
        """The workflow's ``set_data`` values, from any process."""
        return {key: json.loads(value) for key, value in self.state.workflow_data(workflow_id).items()}

    def load_result(self, task_name: str, value: Any) -> Any:
        task = self.tasks.get(task_name)
        return value if task is None else task.codec.load_result(value)

    # -- embedded worker ------------------------------------------------------------------
    def ensure_worker(self) -> None:
        """Start the in-process worker (embedded mode only; a no-op otherwise)."""
        if self._worker is not None and not self._worker.running:
            self._worker.start()

    def close(self) -> None:
        """Stop the embedded worker and close the state store's connections."""
        if self._worker is not None:
            self._worker.stop()
        self.state.close()
