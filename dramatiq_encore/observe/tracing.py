"""OpenTelemetry spans of workflows: one per invocation, one per step, one trace per workflow tree.

Enabled explicitly, once per process, after the tracer provider is configured::

    from dramatiq_encore.observe import tracing
    tracing.instrument(app)                            # the global tracer provider
    tracing.instrument(app, tracer_provider=provider)  # or this one

It needs the ``dramatiq-encore[otel]`` extra (``opentelemetry-api`` and ``-sdk``). Without it,
:func:`instrument` returns False and nothing is installed: no listener, no middleware, no cost.

**What is emitted.** ``encore.step <n> <task>`` for each step (a child task, a timer, a signal
wait), from the moment the step was recorded to the moment its resolution was recorded, and
``encore.invocation <task>`` for each invocation, from its creation (``record.created_at``) to
its end, with its final status. A step's span is the child of its invocation's span; a child
invocation's span (``force_new_workflow`` ones too) is the child of the step that started it;
the root's span is the child of the producer's span current when ``task.send`` was called,
if any.

**Why spans are emitted late, with ids every process computes.** An invocation runs as many
passes, in any process, and each pass replays the steps recorded before it: a span opened
and closed around passes or replayed steps would be emitted again by every pass. So each
span is emitted once, when what it describes is *recorded* once by the store: a step's span
at :class:`~.hooks.StepResolved` (the one process whose delivery or commit recorded the
resolution), an invocation's at :class:`~.hooks.WorkflowFinished` (the one commit that
finished it), with explicit start and end times. A span emitted late must still be the parent
of spans emitted before it, in other processes (a child finishes before its parent's step is
resolved): so span ids are not random but derived from what names the span, a digest of the
trace id and the invocation id (and the step number), which any process can compute. A
child's span names its parent by the id of the step span that does not exist yet
(``NonRecordingSpan(SpanContext(trace_id, step_span_id))`` as the parent context, which the
SDK allows: a parent is only a span context).

The SDK's tracer draws span ids from its ``id_generator`` and offers no per-span choice; this
module gives *its own* tracer (instrumentation scope ``dramatiq_encore``, no other tracer is
touched) a generator that returns, on the calling thread, the id preset for the span being
started, and delegates otherwise. Spans are then ordinary SDK spans: the provider's sampler,
span processors, limits and resource apply. Other tracer implementations are not traced.

**Where the trace context travels.** A tree's trace id is its producer's when a span was
current at ``task.send`` (or a raw producer set a W3C ``traceparent`` in
``options["encore_trace"]``, see ``docs/protocol.md``), else a digest of the deployment's key
prefix and the root workflow id, which needs no carrying (a workflow id reused after its
retention gets the same ids again). :class:`TracingMiddleware` puts the producer's span in
the root's start (``before_enqueue``), a worker reads it (``before_process_message``), and
every message it sends while handling one of that tree (children's starts, results, timers,
cancels, re-sent copies, retries) carries it on. A message from outside the tree
(``app.signal``, ``app.cancel``) carries none: the spans its pass records take the digest
trace id, so a tree whose root had a producer span is split there.

Observing never changes what the engine does: listeners run under :class:`~.hooks.Events`,
which logs and swallows their errors; the middleware's hooks catch their own.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from ..actors.messages import ENVELOPE, TRACE
from ..identity import SEPARATOR, root_of
from .hooks import StepResolved, WorkflowFinished, events

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Tracer as SdkTracer
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.sdk.trace.sampling import Decision
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the [otel] extra is not installed: instrument() says so
    AVAILABLE = False
else:
    AVAILABLE = True
    SAMPLED = Decision.RECORD_AND_SAMPLE

if TYPE_CHECKING:
    from ..app import Encore

logger = logging.getLogger(__name__)

SCOPE = "dramatiq_encore"
#: The tree being handled by this thread: (root workflow id, the traceparent its messages carry).
_tree: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar("encore_trace", default=None)


def _digest(size: int, *parts: object) -> int:
    text = "\x00".join(map(str, parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "big") or 1


def trace_id_of(namespace: str, root: str) -> int:
    """The trace id of a tree whose root had no producer span: the same in every process of a
    deployment (``namespace``: its key prefix), another in another deployment."""
    return _digest(16, "encore-trace", namespace, root)


def invocation_span_id(trace_id: int, invocation_id: str) -> int:
    return _digest(8, "encore-invocation", f"{trace_id:032x}", invocation_id)


def step_span_id(trace_id: int, invocation_id: str, n: int) -> int:
    return _digest(8, "encore-step", f"{trace_id:032x}", invocation_id, n)


def traceparent(span_context: SpanContext) -> str | None:
    """The W3C ``traceparent`` of a valid span context."""
    if not span_context.is_valid:
        return None
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def _root_of_message(options: dict[str, Any], message_id: str) -> str | None:
    envelope = options.get(ENVELOPE)
    if envelope is None:
        invocation_id = options.get("workflow_id") or message_id
    else:
        invocation_id = envelope.get("invocation_id") if isinstance(envelope, dict) else None
    return root_of(invocation_id) if isinstance(invocation_id, str) else None


class TracingMiddleware(Middleware):
    """Carries a tree's trace context in its messages (``options["encore_trace"]``)."""

    def __init__(self) -> None:
        self.apps: weakref.WeakSet[Encore] = weakref.WeakSet()

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        try:
            options = message.options
            if TRACE in options or not any(message.actor_name in app.tasks for app in self.apps):
                return  # carried already (a copy, a retry), or not an encore task
            tree, root = _tree.get(), _root_of_message(options, message.message_id)
            if tree is not None and tree[0] == root:  # the tree being handled: its own context
                carried = tree[1]
            elif ENVELOPE not in options:  # a new root's start: the producer's current span, if any
                carried = traceparent(trace.get_current_span().get_span_context())
            else:  # sent from outside the tree (app.signal...): nothing known
                carried = None
            if carried is not None:
                options[TRACE] = carried
        except Exception:
            logger.debug("no trace context for message %s", message.message_id, exc_info=True)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        try:
            carried = message.options.get(TRACE)
            root = _root_of_message(message.options, message.message_id)
            _tree.set(None if root is None else (root, carried if isinstance(carried, str) else None))
        except Exception:
            _tree.set(None)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        _tree.set(None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        _tree.set(None)


if AVAILABLE:

    class PresetIds(IdGenerator):
        """Returns the ids preset on this thread for the next span, else asks ``inner``."""

        def __init__(self, inner: IdGenerator) -> None:
            self.inner = inner
            self._local = threading.local()

        @contextlib.contextmanager
        def preset(self, trace_id: int, span_id: int) -> Iterator[None]:
            self._local.ids = (trace_id, span_id)
            try:
                yield
            finally:
                self._local.ids = None

        def generate_span_id(self) -> int:
            ids = getattr(self._local, "ids", None)
            return self.inner.generate_span_id() if ids is None else int(ids[1])

        def generate_trace_id(self) -> int:
            ids = getattr(self._local, "ids", None)
            return self.inner.generate_trace_id() if ids is None else int(ids[0])

        def is_trace_id_random(self) -> bool:
            return False


@dataclasses.dataclass(frozen=True, slots=True)
class _Tree:
    """The trace of one workflow tree, as this process knows it."""

    trace_id: int
    flags: TraceFlags
    #: The producer's span: the root invocation's parent (None: the root's span is a trace root).
    origin: SpanContext | None

    def parent(self, span_id: int) -> Context:
        span = NonRecordingSpan(SpanContext(self.trace_id, span_id, is_remote=True, trace_flags=self.flags))
        return trace.set_span_in_context(span, Context())

    def root_parent(self) -> Context:
        if self.origin is None:
            return Context()  # a trace root (never the thread's current span)
        return trace.set_span_in_context(NonRecordingSpan(self.origin), Context())


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    """This module's SDK tracer of one provider, and the id generator it was given."""

    provider: Any
    tracer: SdkTracer | None
    ids: PresetIds | None = None


class Tracing:
    """Turns the runtime's events into spans (see the module docstring)."""

    def __init__(self, namespace: str, provider: Any = None) -> None:
        self.namespace = namespace
        self.provider = provider
        self.apps: weakref.WeakSet[Encore] = weakref.WeakSet()
        self._scope: _Scope | None = None
        self._lock = threading.Lock()

    def scope(self) -> _Scope:
        """The tracer of the provider in use (``tracer`` None: not an SDK provider, or none yet)."""
        provider = self.provider if self.provider is not None else trace.get_tracer_provider()
        scope = self._scope
        if scope is not None and scope.provider is provider:
            return scope
        with self._lock:
            tracer = provider.get_tracer(SCOPE)
            if not isinstance(tracer, SdkTracer):
                scope = _Scope(provider, None)  # a no-op or proxy provider: nothing is configured yet
            else:
                if not isinstance(tracer.id_generator, PresetIds):
                    tracer.id_generator = PresetIds(tracer.id_generator)
                scope = _Scope(provider, tracer, tracer.id_generator)
            self._scope = scope
        return scope

    def tree(self, tracer: SdkTracer, invocation_id: str) -> _Tree:
        """The trace of ``invocation_id``'s tree: the one its messages carry, else the root's digest."""
        root = root_of(invocation_id)
        handled = _tree.get()
        carried = handled[1] if handled is not None and handled[0] == root else None
        if carried is not None:
            extracted = TraceContextTextMapPropagator().extract({"traceparent": carried}, context=Context())
            origin = trace.get_current_span(extracted).get_span_context()
            if origin.is_valid:
                return _Tree(origin.trace_id, origin.trace_flags, origin)
        trace_id = trace_id_of(self.namespace, root)
        sampled = tracer.sampler.should_sample(Context(), trace_id, "encore.workflow").decision == SAMPLED
        return _Tree(trace_id, TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT), None)

    @staticmethod
    def emit(
        scope: _Scope,
        ids: tuple[int, int],
        name: str,
        parent: Context,
        times: tuple[float, float],
        attributes: dict[str, Any],
        ok: bool,
        kind: SpanKind | None = None,
    ) -> None:
        """One finished span with preset ids, from ``times[0]`` to ``times[1]`` (epoch seconds)."""
        assert scope.tracer is not None and scope.ids is not None
        end = int(times[1] * 1e9)
        start = min(int(times[0] * 1e9), end)
        with scope.ids.preset(*ids):
            span = scope.tracer.start_span(
                name, context=parent, kind=kind or SpanKind.INTERNAL, attributes=attributes, start_time=start
            )
        if not ok:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)

    def on_step(self, event: StepResolved) -> None:
        scope = self.scope()
        if scope.tracer is None:
            return
        tree = self.tree(scope.tracer, event.invocation_id)
        attributes: dict[str, Any] = {
            "encore.workflow_id": event.workflow_id,
            "encore.invocation_id": event.invocation_id,
            "encore.step": event.n,
            "encore.task": event.task,
            "encore.ok": event.ok,
        }
        if event.child:
            attributes["encore.child"] = event.child
        started = event.started_at if event.started_at is not None else event.resolved_at
        ids = (tree.trace_id, step_span_id(tree.trace_id, event.invocation_id, event.n))
        parent = tree.parent(invocation_span_id(tree.trace_id, event.invocation_id))
        name = f"encore.step {event.n} {event.task}"
        self.emit(scope, ids, name, parent, (started, event.resolved_at), attributes, event.ok)

    def on_finished(self, event: WorkflowFinished) -> None:
        scope = self.scope()
        if scope.tracer is None:
            return
        ended = time.time()
        task, created = self._task_and_creation(event)
        tree = self.tree(scope.tracer, event.invocation_id)
        parent_id, child, n = event.invocation_id.rpartition(SEPARATOR)
        parent = tree.parent(step_span_id(tree.trace_id, parent_id, int(n))) if child else tree.root_parent()
        attributes: dict[str, Any] = {
            "encore.workflow_id": event.workflow_id,
            "encore.invocation_id": event.invocation_id,
            "encore.workflow_type": event.workflow_type,
            "encore.task": task,
            "encore.status": event.status,
            "encore.root": event.root,
        }
        ids = (tree.trace_id, invocation_span_id(tree.trace_id, event.invocation_id))
        times = (created if created is not None else ended, ended)
        ok = event.status != "failed"  # cancelled is no error
        self.emit(scope, ids, f"encore.invocation {task}", parent, times, attributes, ok, SpanKind.CONSUMER)

    def _task_and_creation(self, event: WorkflowFinished) -> tuple[str, float | None]:
        """The invocation's task and creation time: from the event, else from its record."""
        task: str = getattr(event, "task", "")
        created: float | None = getattr(event, "created_at", None)
        if task and created is not None:
            return task, created
        for app in list(self.apps):
            meta = app.state.get_meta(event.invocation_id)
            if meta is not None:
                return meta.record.task, meta.record.created_at
        return task or event.workflow_type, created


_active: Tracing | None = None
_middleware: weakref.WeakKeyDictionary[dramatiq.Broker, TracingMiddleware] = weakref.WeakKeyDictionary()


def instrument(app: Encore, tracer_provider: Any = None) -> bool:
    """Trace ``app``'s workflows in this process (see the module docstring); False when the
    OpenTelemetry SDK is not installed. ``tracer_provider`` defaults to the global one, read
    at each span (so it may be configured later). Calling it again adds another app (or sets
    another provider); the runtime's events are process-wide, so one listener serves them all,
    and digest trace ids use the first app's key prefix.
    """
    global _active
    if not AVAILABLE:
        logger.info("tracing not enabled: install dramatiq-encore[otel] (opentelemetry-api and -sdk)")
        return False
    if _active is None:
        _active = Tracing(app.settings.key_prefix, tracer_provider)
        events.subscribe(StepResolved, _active.on_step)
        events.subscribe(WorkflowFinished, _active.on_finished)
    elif tracer_provider is not None:
        _active.provider = tracer_provider
    _active.apps.add(app)
    if app.broker not in _middleware:
        _middleware[app.broker] = TracingMiddleware()
        app.broker.add_middleware(_middleware[app.broker])
    _middleware[app.broker].apps.add(app)
    return True


def uninstrument() -> None:
    """Stop tracing in this process: the listeners and the middleware are removed."""
    global _active
    if _active is not None:
        events.unsubscribe(StepResolved, _active.on_step)
        events.unsubscribe(WorkflowFinished, _active.on_finished)
        _active = None
    for broker, middleware in list(_middleware.items()):
        if middleware in broker.middleware:
            broker.middleware.remove(middleware)
    _middleware.clear()
