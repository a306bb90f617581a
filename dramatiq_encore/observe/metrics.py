"""Prometheus metrics of the runtime's events, served by every worker process.

With ``ENCORE_METRICS_PORT`` set (``EncoreSettings.metrics_port``), each process that runs
a dramatiq worker for an Encore app serves, with ``prometheus_client``, on ``/metrics``:

- ``encore_workflows_started_total{workflow_type}``: root workflows this process created;
- ``encore_workflows_finished_total{workflow_type,status}``: root workflows this process
  finished (succeeded, failed, cancelled);
- ``encore_passes_total{workflow_type}``: passes run (of every invocation of a workflow of
  that type: the root's and its children's);
- ``encore_replay_seconds``: histogram of a pass's replay, from its start to the first value
  or step it recorded (a pass that records nothing counts whole);
- ``encore_step_seconds``: histogram of a step, from its start (the time its journal entry
  recorded) to the moment its result was recorded;
- ``encore_suspended_workflows``: root workflows suspended now, read from the store's index
  at each scrape. It is the same number in every process: aggregate it with ``max``, not
  ``sum``.

**One port per process.** dramatiq's CLI forks its worker processes (``-p N``) without
giving them an index, so each process binds the first free port from ENCORE_METRICS_PORT
upward (at most :data:`PORTS` ports) and logs the one it took: ``dramatiq app -p 4`` on one
host serves on P, P+1, P+2, P+3. Scrape every port and sum the counters and histograms.
Prometheus's multiprocess mode was not chosen: it needs ``PROMETHEUS_MULTIPROC_DIR`` set
before ``prometheus_client`` is imported in every process, a directory wiped at each start
and an exporter process of its own, and dramatiq's own middleware
(``dramatiq.middleware.Prometheus``, port 9191) already claims that variable for its
directory. That middleware keeps working beside this one: encore's metrics live in a
registry of their own, on their own ports, and ``prometheus_client`` is imported only when
the server starts, after dramatiq's middleware set up its multiprocess mode (in which case
encore's counters are also written to its files and appear, summed, on its port too).

**When.** The server starts from the app's middleware at ``after_worker_boot`` (a worker of
the CLI, or an embedded or in-process worker), never at import: ``encore list`` and
producers bind no port. It stops when the last worker that started it shuts down. The
listener subscribes to :data:`~.hooks.events` only while the server runs: with metrics off,
the runtime's events cost nothing.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from .hooks import PassEnded, StepResolved, WorkflowFinished, WorkflowStarted, events

if TYPE_CHECKING:
    from ..app import Encore

logger = logging.getLogger(__name__)

#: How many ports from ENCORE_METRICS_PORT up a process tries before it gives up.
PORTS = 64
ADDRESS = "0.0.0.0"
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)
REPLAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
SUSPENDED = "encore_suspended_workflows"


class Suspended:
    """``encore_suspended_workflows``, counted in the index of the apps served, at scrape time."""

    def __init__(self) -> None:
        self.apps: list[Encore] = []

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(SUSPENDED, "Root workflows suspended now (from the store's index).")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(SUSPENDED, "Root workflows suspended now (from the store's index).")
        total, counted, states = 0, False, set()
        for app in list(self.apps):
            if id(app.state) in states:
                continue  # two apps on one store count its workflows once
            states.add(id(app.state))
            try:
                total += app.count_workflows("suspended")
                counted = True
            except Exception:
                logger.debug("could not count suspended workflows of %s", app.state.describe(), exc_info=True)
        if counted:
            family.add_metric([], total)
        yield family


class Metrics:
    """The process's encore metrics, in a registry of their own, fed by the runtime's events."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.started = Counter(
            "encore_workflows_started", "Root workflows started.", ["workflow_type"], registry=registry
        )
        self.finished = Counter(
            "encore_workflows_finished", "Root workflows finished.", ["workflow_type", "status"], registry=registry
        )
        self.passes = Counter("encore_passes", "Passes run.", ["workflow_type"], registry=registry)
        self.replay = Histogram(
            "encore_replay_seconds", "Replay time of a pass.", buckets=REPLAY_BUCKETS, registry=registry
        )
        self.steps = Histogram(
            "encore_step_seconds", "Time from a step's start to its result.", buckets=STEP_BUCKETS, registry=registry
        )
        self.suspended = Suspended()
        registry.register(self.suspended)
        self._handlers: list[tuple[type, Any]] = [
            (WorkflowStarted, self.on_started),
            (WorkflowFinished, self.on_finished),
            (PassEnded, self.on_pass),
            (StepResolved, self.on_step),
        ]

    def subscribe(self) -> None:
        for kind, handler in self._handlers:
            events.subscribe(kind, handler)

    def unsubscribe(self) -> None:
        for kind, handler in self._handlers:
            events.unsubscribe(kind, handler)

    def on_started(self, event: WorkflowStarted) -> None:
        if event.root:
            self.started.labels(event.workflow_type).inc()

    def on_finished(self, event: WorkflowFinished) -> None:
        if event.root:
            self.finished.labels(event.workflow_type, event.status).inc()

    def on_pass(self, event: PassEnded) -> None:
        self.passes.labels(event.workflow_type).inc()
        self.replay.observe(event.replay_seconds)

    def on_step(self, event: StepResolved) -> None:
        if event.started_at is not None:
            self.steps.observe(max(0.0, event.resolved_at - event.started_at))


class _Server:
    __slots__ = ("port", "server", "thread")

    def __init__(self, server: Any, thread: threading.Thread, port: int) -> None:
        self.server, self.thread, self.port = server, thread, port


_lock = threading.Lock()
_metrics: Metrics | None = None
_server: _Server | None = None


def metrics() -> Metrics:
    """This process's metrics (made on first use)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def _bind(registry: CollectorRegistry, base: int) -> _Server | None:
    for port in range(base, min(base + PORTS, 65536)):
        try:
            server, thread = start_http_server(port, addr=ADDRESS, registry=registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            logger.error("cannot serve Prometheus metrics on port %d: %s", port, exc)
            return None
        logger.info("serving Prometheus metrics on port %d (process %d)", port, os.getpid())
        return _Server(server, thread, port)
    logger.error("cannot serve Prometheus metrics: ports %d-%d are all in use", base, base + PORTS - 1)
    return None


def serve(app: Encore, port: int) -> int | None:
    """Serve this process's metrics from ``port`` (or the first free port above it) and count
    ``app``'s suspended workflows; the port served (the one already bound, if any), or None."""
    global _server
    with _lock:
        current = metrics()
        if _server is None:
            _server = _bind(current.registry, port)
            if _server is None:
                return None
            current.subscribe()
        if app not in current.suspended.apps:
            current.suspended.apps.append(app)
        return _server.port


def release(app: Encore) -> None:
    """``app``'s worker stopped: stop serving once no app is served."""
    global _server
    with _lock:
        current = _metrics
        if current is None or app not in current.suspended.apps:
            return
        current.suspended.apps.remove(app)
        if not current.suspended.apps and _server is not None:
            current.unsubscribe()
            _server.server.shutdown()
            _server.server.server_close()
            _server = None


def served_port() -> int | None:
    """The port this process serves its metrics on (None: not serving)."""
    return None if _server is None else _server.port
