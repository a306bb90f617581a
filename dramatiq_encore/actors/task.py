"""``@app.task``: a plain function becomes a replayable task backed by a real dramatiq actor."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

import dramatiq
from dramatiq.errors import BrokerConnectionError

from ..broker_config.middleware import current_message, install_asyncio
from ..errors import BrokerUnavailable, EncoreError, MisuseError, WorkflowIdConflict
from ..identity import WorkflowIdentity, check_workflow_id
from ..invocation import Invocation
from .codec import TaskCodec, check_size, digest
from .context import WorkflowContext, current_context

if TYPE_CHECKING:
    from ..app import Encore

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# Tasks default to 3 retries with exponential backoff from 1 s to 30 s (README, "In an existing
# Dramatiq deployment"); every option can be overridden per task.
RETRY_DEFAULTS = {"max_retries": 3, "min_backoff": 1_000, "max_backoff": 30_000}
_PIPELINE_OPTIONS = ("pipe_target", "pipe_ignore")
_CALLBACK_OPTIONS = ("on_success", "on_failure")


def _refuse_pipelines(options: dict[str, Any], where: str) -> None:
    used = [name for name in _PIPELINE_OPTIONS if name in options]
    if used:
        raise MisuseError(
            f"{where}: {', '.join(used)} is not supported; dramatiq pipelines do not compose with "
            "workflows. Call the next task with wf.execute_task inside a workflow instead."
        )


def _callback_name(target: Any) -> str:
    return target.name if isinstance(target, Task) else getattr(target, "actor_name", target)


class Task(Generic[P, R]):
    """A workflow-capable task; ``task.actor`` is the dramatiq actor that runs it.

    >>> @app.task
    ... def greet(name: str) -> str:
    ...     return f"hello {name} {greet.wf.uuid()}"
    >>> greet.send("ada").wait(timeout=10)
    """

    def __init__(
        self,
        app: Encore,
        fn: Callable[P, R],
        *,
        force_new_workflow: bool = False,
        actor_name: str | None = None,
        queue_name: str = "default",
        priority: int = 0,
        **options: Any,
    ) -> None:
        _refuse_pipelines(options, f"@app.task on {fn.__name__!r}")
        self._app = app
        self.fn = fn
        self.force_new_workflow = force_new_workflow
        self.callbacks = {k: _callback_name(options.pop(k)) for k in _CALLBACK_OPTIONS if options.get(k)}
        options = {**RETRY_DEFAULTS, **options}
        if inspect.iscoroutinefunction(fn):  # an async task: its passes run on dramatiq's loop
            install_asyncio(app.broker)
        declare = dramatiq.actor(  # validates the options against the broker's middleware
            broker=app.broker,
            actor_name=actor_name or fn.__name__,
            queue_name=queue_name,
            priority=priority,
            **options,
        )
        self.actor: dramatiq.Actor[..., None] = declare(self._entry)
        self.codec = TaskCodec(fn, self.actor.actor_name)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Task({self.name!r}, queue={self.queue_name!r})"

    @property
    def name(self) -> str:
        return self.actor.actor_name

    @property
    def queue_name(self) -> str:
        return self.actor.queue_name

    # -- inside a running task ----------------------------------------------------------
    @property
    def wf(self) -> WorkflowContext:
        """Deterministic operations of the invocation running in this thread."""
        return current_context()

    @property
    def workflow(self) -> WorkflowIdentity:
        """Identity of the workflow of the invocation running in this thread."""
        return current_context().identity

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the plain function (no workflow context: ``wf`` is unavailable)."""
        return self.fn(*args, **kwargs)

    def _entry(self, *args: Any, **kwargs: Any) -> None:
        message = current_message()
        if message is None:
            raise EncoreError(f"{self.name!r} was called outside an Encore worker; use {self.name}.send(...)")
        self._app.runtime.handle(self, message, args, kwargs)

    # -- starting -----------------------------------------------------------------------
    def send(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        """Start a new root workflow running this task; returns its handle at once."""
        return self.send_with_options(args=args, kwargs=kwargs)

    def send_with_options(
        self,
        *,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        workflow_id: str | None = None,
        delay: int | None = None,
        **options: Any,
    ) -> Invocation[R]:
        """Start a root workflow; ``workflow_id`` makes the start idempotent.

        Sending twice with the same ``workflow_id`` runs the workflow once and both handles
        see the same result. Reusing it with other arguments raises ``WorkflowIdConflict``.
        """
        _refuse_pipelines(options, f"{self.name}.send_with_options")
        json_args, json_kwargs = self.codec.dump_args(tuple(args), kwargs or {})
        for name in _CALLBACK_OPTIONS:
            if options.get(name) is not None:
                options[name] = _callback_name(options[name])
        args_digest = digest(json_args, json_kwargs)
        if workflow_id is not None:
            check_workflow_id(workflow_id)
            existing = self._app.state.get_meta(workflow_id)
            if existing is not None and existing.record.digest != args_digest:
                raise WorkflowIdConflict(workflow_id, existing.record.task)
            options["workflow_id"] = workflow_id
        check_size(f"arguments of {self.name}", [json_args, json_kwargs], self._app.settings.max_payload)
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.queue_name, actor_name=self.name, args=tuple(json_args), kwargs=json_kwargs, options=options
        )
        try:
            self._app.broker.enqueue(message, delay=delay)
        except BrokerConnectionError as exc:
            raise BrokerUnavailable(
                f"could not send {self.name!r}: the broker at {self._app.describe_broker()} is unreachable ({exc}); "
                "check ENCORE_BROKER_URL and that RabbitMQ is running"
            ) from None
        self._app.ensure_worker()
        expected = args_digest if workflow_id is not None else None
        handle: Invocation[R] = Invocation(
            self._app, workflow_id or message.message_id, task_name=self.name, expected_digest=expected
        )
        return handle


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` with options returns: a decorator keeping the function's signature.

    A coroutine function's task is typed with the awaited result (``async def f() -> T``
    gives ``Task[P, T]``).
    """

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]], /) -> Task[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
