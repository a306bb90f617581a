"""``Encore``: binds a broker, a state backend and the task registry."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

import dramatiq
import dramatiq.broker
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerConnectionError

from .actors.codec import check_size, to_json_value
from .actors.messages import CancelEnvelope, SignalEnvelope
from .actors.runtime import Runtime
from .actors.task import Task, TaskDecorator
from .broker_config import EncoreSettings, load_settings, make_broker, redact
from .broker_config.embedded import EmbeddedWorker
from .broker_config.middleware import install
from .errors import BrokerUnavailable, EncoreError, StateLost, TooManySignals
from .invocation import Invocation
from .state.backend import StateBackend
from .state.backends.memory import MemoryState
from .state.models import InvocationMeta
from .views import History, WorkflowDescription, WorkflowPage

logger = logging.getLogger(__name__)

_EMBEDDED_WORKER_WARNING = (
    "encore worker: ENCORE_BROKER_URL is not set and this app was given no broker, so it uses an in-process "
    "stub broker and these workers receive nothing sent from other processes; set ENCORE_BROKER_URL or pass "
    "Encore(broker=...)"
)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _make_state(settings: EncoreSettings) -> StateBackend:
    if settings.state_url is None:
        return MemoryState()
    from .state.backends.redis import RedisState

    return RedisState.from_url(
        settings.state_url,
        retention=settings.retention,
        prefix=settings.key_prefix,
        wait=settings.state_wait,
        shards=settings.index_shards,
    )


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
        if self.embedded and os.environ.get("ENCORE_WORKER_CLI"):
            logger.warning(_EMBEDDED_WORKER_WARNING)

    # -- declaring tasks ------------------------------------------------------------------
    # Typed: the task keeps the function's signature (Task[P, R]); an ``async def`` returning T gives Task[P, T].
    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Task[P, T]: ...
    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        *,
        force_new_workflow: bool = False,
        actor_name: str | None = None,
        queue_name: str = ...,
        priority: int = 0,
        **options: Any,
    ) -> TaskDecorator: ...

    def task(
        self, fn: Callable[..., Any] | None = None, **options: Any
    ) -> Task[Any, Any] | Callable[[Callable[P, R]], Task[P, R]]:
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
    def get_invocation(self, invocation_id: str) -> Invocation[Any]:
        """A handle on any invocation by id; unknown ids read ``pending``."""
        return Invocation(self, invocation_id)

    def get_workflow_data(self, workflow_id: str) -> dict[str, Any]:
        """The workflow's ``set_data`` values, from any process."""
        return {key: json.loads(value) for key, value in self.state.workflow_data(workflow_id).items()}

    # -- operating: the workflow index, trees, histories ---------------------------------
    def list_workflows(
        self,
        status: str | None = None,
        workflow_type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WorkflowPage:
        """A page of root workflows, newest first, from the store's index (O(page), any process).

        ``status`` is one of pending, running, suspended, succeeded, failed, cancelled;
        ``workflow_type`` a task name. Pass the page's ``cursor`` back for the next page.

        >>> page = app.list_workflows(status="failed", limit=20)
        >>> [w.workflow_id for w in page.items], page.cursor
        """
        from .operate.describe import list_workflows

        return list_workflows(self.state, status, workflow_type, limit, cursor)

    def count_workflows(self, status: str) -> int:
        """How many root workflows have ``status`` (read from the index)."""
        from .operate.tree import operations

        return operations(self.state).count_index(status)

    def describe(self, workflow_id: str) -> WorkflowDescription:
        """The workflow's invocation tree with every step (raises ``UnknownWorkflow``)."""
        from .operate.describe import describe

        return describe(self.state, workflow_id)

    def export(self, workflow_id: str) -> History:
        """The workflow tree's records and journals, for ``encore replay`` and ``assert_replays``."""
        from .operate.describe import export

        return export(self.state, workflow_id)

    def retry(self, workflow_id: str) -> int:
        """Resume a failed root workflow from its failed step; returns that step's number.

        Every step before it keeps its recorded result and values; the failed step (and what
        follows) runs again with the code the workers run now. Raises ``NotRetryable`` when
        the workflow is not failed.
        """
        from .operate.rewrite import retry

        step = retry(self.state, self.broker, workflow_id)
        self.ensure_worker()
        return step

    def fork(self, workflow_id: str, from_step: int, new_workflow_id: str | None = None) -> str:
        """A new root workflow that keeps steps 1..from_step-1 of ``workflow_id`` and runs from
        ``from_step`` with today's code; returns its id."""
        from .operate.rewrite import fork

        new_id = fork(self.state, self.broker, workflow_id, from_step, new_workflow_id)
        self.ensure_worker()
        return new_id

    # -- talking to running workflows ----------------------------------------------------
    def signal(
        self, workflow_id: str, name: str, payload: Any = None, *, signal_id: str | None = None, timeout: float = 10.0
    ) -> str:
        """Send signal ``name`` with ``payload`` (any JSON value) to a workflow; returns the signal's id.

        The workflow receives it with ``wf.wait_for_signal(name)``, now or later: a signal that
        arrives before the workflow waits for it is kept. ``signal_id`` makes sending
        idempotent (the same id is recorded once). The workflow must exist: when no worker has
        started it yet, this waits up to ``timeout`` seconds for it. A signal to a finished
        workflow is ignored. Any producer can send the same message without this library:
        see :class:`~dramatiq_encore.actors.messages.SignalEnvelope` for its body. A workflow
        keeps at most ``ENCORE_MAX_PENDING_SIGNALS`` signals unconsumed: past that this raises
        :class:`~dramatiq_encore.errors.TooManySignals` (and such a plain message is
        dead-lettered).

        >>> app.signal("order-A-1", "approval", {"approved": True, "by": "ada"})
        """
        meta = self._workflow(workflow_id, timeout)
        value = to_json_value(payload, f"payload of signal {name!r}")
        check_size(f"payload of signal {name!r}", value, self.settings.max_payload)
        limit = self.settings.max_pending_signals
        if meta.signals_waiting >= limit:
            raise TooManySignals(
                f"workflow {workflow_id!r} already has {meta.signals_waiting} signals waiting to be consumed "
                f"(ENCORE_MAX_PENDING_SIGNALS={limit}); it must wait_for_signal them before it takes more"
            )
        signal_id = signal_id or uuid.uuid4().hex
        envelope = SignalEnvelope(invocation_id=workflow_id, name=name, payload=value, signal_id=signal_id)
        self._send_to(meta, envelope.model_dump(mode="json"))
        return signal_id

    def cancel(self, workflow_id: str, reason: str = "", *, timeout: float = 10.0) -> None:
        """Cancel a running workflow.

        At its next step (``execute_task``, ``gather``, ``sleep``, ``wait_for_signal``...) the
        workflow raises :class:`~dramatiq_encore.errors.WorkflowCancelled`; its ``finally`` (or
        ``except``) blocks may still run cleanup steps. It then ends with status
        ``cancelled``, its ``wait()`` raises ``TaskError`` with ``error_type == "Cancelled"``,
        and its unfinished children are cancelled too. Cancelling a finished workflow does
        nothing.

        >>> app.cancel("order-A-1", reason="customer withdrew")
        """
        meta = self._workflow(workflow_id, timeout)
        self._send_to(meta, CancelEnvelope(invocation_id=workflow_id, reason=reason).model_dump(mode="json"))

    def _workflow(self, workflow_id: str, timeout: float) -> InvocationMeta:
        deadline = time.monotonic() + timeout
        while (meta := self.state.get_meta(workflow_id)) is None:
            lost = self.state.lost_reason(workflow_id)
            if lost is not None:
                raise StateLost(workflow_id, self.state.describe(), lost)
            if time.monotonic() >= deadline:
                raise EncoreError(
                    f"no workflow {workflow_id!r} exists (no worker started it within {timeout} s); "
                    "check the id, and that workers are running"
                )
            time.sleep(0.01)
        return meta

    def _send_to(self, meta: InvocationMeta, envelope: dict[str, Any]) -> None:
        record = meta.record
        try:
            self.runtime.outbox.send(record.queue, record.task, [], {}, envelope)
        except BrokerConnectionError as exc:
            raise BrokerUnavailable(
                f"could not send a {envelope['kind']} to workflow {record.invocation_id!r}: the broker at "
                f"{self.describe_broker()} is unreachable ({exc})"
            ) from None

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
