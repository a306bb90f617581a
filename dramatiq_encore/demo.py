"""``encore demo``: crash an order workflow half-way, resume it, and compare its values.

No server is needed. Two in-process "workers" stand in for two worker processes:

- worker A (run 1) is an :class:`Encore` app with its own stub broker and dramatiq
  worker. It drives the order workflow until step N's task is running, then "dies":
  the blocked step raises :class:`SimulatedCrash`, which escapes the engine without
  writing anything, exactly like a SIGKILL, and the worker is stopped.
- worker B (the resumed run) is a second app with a new stub broker and a new worker
  but the SAME :class:`MemoryState`, playing the Redis both workers would use. It is
  handed what a durable broker would hand it after the crash: every message worker A
  took but never acknowledged, plus whatever was still queued. If worker A held the step's
  lease (``ENCORE_FAST_PATH=0``; the fast path runs a step's first pass before it takes one),
  worker B is refused until it expires: :class:`DemoState` counts that, the report says it.

The workflow function reports every deterministic value it sees on every pass (each
replay included) to a :class:`Probe`; the demo prints the values of both runs side by
side and checks that every pass of every run saw the same values.

Tasks are declared by :func:`declare` because a task name is unique per broker: each
app gets its own copy of the same tasks, as each worker process would import them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import queue
import secrets
import sys
import threading
import time
from typing import Any, TextIO, TypeVar

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from .actors.task import Task
from .app import Encore
from .broker_config import load_settings
from .errors import EncoreError
from .state.backend import Delivery
from .state.backends.memory import MemoryState

T = TypeVar("T")

STEPS = ("validate order", "charge payment", "reserve inventory", "ship")
# A short lease: when worker A held one on the interrupted step, worker B waits for it to
# expire before it may re-run the step, as a real worker waits after a SIGKILL.
LEASE_MS = 1_000
TIMEOUT_S = 30.0
WORKER_THREADS = 4
ORDER: dict[str, Any] = {"order_id": "ORD-1042", "items": ["kettle", "teapot"], "total": 54.9}
NOT_REACHED = "(not reached)"


class DemoError(EncoreError):
    """The demo could not play its scenario (a step never started, the workflow failed...)."""


class SimulatedCrash(BaseException):
    """Ends worker A's step like a killed process: nothing after it is written.

    A ``BaseException`` on purpose: the engine records an ``Exception`` from a task as a
    failure (and dramatiq retries it), whereas a crash must leave no trace in the state.
    """


class Probe:
    """What the workflow function saw, pass by pass, labelled with the run it ran in."""

    def __init__(self) -> None:
        self.run = "run 1"
        self.passes: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def new_pass(self) -> None:
        with self._lock:
            self.passes.append((self.run, {}))

    def saw(self, name: str, value: T) -> T:
        text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
        with self._lock:
            self.passes[-1][1].setdefault(name, text)
        return value

    def names(self) -> list[str]:
        """Every value name, in the order the workflow first met them."""
        return list(dict.fromkeys(name for _, seen in self.passes for name in seen))

    def first(self, run: str, name: str) -> str | None:
        return next((seen[name] for label, seen in self.passes if label == run and name in seen), None)

    def consistent(self) -> bool:
        """True when every pass that met a value saw the same value."""
        return all(len({seen[name] for _, seen in self.passes if name in seen}) == 1 for name in self.names())

    def count(self, run: str) -> int:
        return sum(1 for label, _ in self.passes if label == run)


class CrashPlan:
    """Holds step ``at``'s task body until the demo pulls the plug (``at=None``: never)."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.entered = threading.Event()
        self.pull_plug = threading.Event()

    def checkpoint(self, step: int) -> None:
        if step != self.at:
            return
        self.entered.set()
        self.pull_plug.wait(TIMEOUT_S)
        raise SimulatedCrash(f"worker crashed during step {step}")


class DemoState(MemoryState):
    """The store both workers share, counting the deliveries a held lease refused."""

    def __init__(self) -> None:
        super().__init__(lease_ms=LEASE_MS)
        self.refused = 0
        self._count_lock = threading.Lock()

    def deliver(self, *args: Any, **kwargs: Any) -> Delivery:
        delivery = super().deliver(*args, **kwargs)
        if delivery.locked:  # another worker's lease holds the invocation: the message comes back later
            with self._count_lock:
                self.refused += 1
        return delivery


@dataclasses.dataclass(frozen=True)
class DemoTasks:
    workflow: Task[[dict[str, Any]], dict[str, Any]]
    steps: tuple[Task[..., dict[str, Any]], ...]


def _declare_steps(app: Encore, plan: CrashPlan) -> tuple[Task[..., dict[str, Any]], ...]:
    # throws=SimulatedCrash: dramatiq neither retries the simulated crash nor logs it as an error.
    @app.task(throws=(SimulatedCrash,))
    def validate_order(order: dict[str, Any]) -> dict[str, Any]:
        plan.checkpoint(1)
        return {"validation_id": validate_order.wf.uuid(), "lines": len(order["items"])}

    @app.task(throws=(SimulatedCrash,))
    def charge_payment(order_id: str, amount: float, payment_ref: str) -> dict[str, Any]:
        plan.checkpoint(2)
        return {"charge_id": charge_payment.wf.uuid(), "amount": amount, "payment_ref": payment_ref}

    @app.task(throws=(SimulatedCrash,))
    def reserve_inventory(order_id: str, items: list[str], hold_until: dt.datetime) -> dict[str, Any]:
        plan.checkpoint(3)
        return {"reservation_id": reserve_inventory.wf.uuid(), "items": items, "hold_until": hold_until}

    @app.task(throws=(SimulatedCrash,))
    def ship_order(order_id: str, parcel_id: str, label_seed: float) -> dict[str, Any]:
        plan.checkpoint(4)
        return {"tracking_number": f"TRK-{order_id}-{int(label_seed * 100_000):05d}", "parcel_id": parcel_id}

    return validate_order, charge_payment, reserve_inventory, ship_order


def declare(app: Encore, probe: Probe, plan: CrashPlan) -> DemoTasks:
    """Declare the demo's order workflow and its four steps on ``app``."""
    validate, charge, reserve, ship = _declare_steps(app, plan)

    @app.task
    def fulfil_order(order: dict[str, Any]) -> dict[str, Any]:
        wf = fulfil_order.wf
        probe.new_pass()
        order_id = order["order_id"]
        label_seed = probe.saw("label seed (wf.random)", wf.random())
        checked = wf.execute_task(validate, order).result
        probe.saw("validation id (step 1)", checked["validation_id"])
        payment_ref = probe.saw("payment ref (wf.uuid)", wf.uuid())
        charged = wf.execute_task(charge, order_id, order["total"], payment_ref).result
        probe.saw("charge id (step 2)", charged["charge_id"])
        hold_until = probe.saw("hold until (wf.utc_now)", wf.utc_now() + dt.timedelta(minutes=30))
        reserved = wf.execute_task(reserve, order_id, order["items"], hold_until).result
        probe.saw("reservation id (step 3)", reserved["reservation_id"])
        parcel_id = probe.saw("parcel id (wf.uuid)", wf.uuid())
        shipped = wf.execute_task(ship, order_id, parcel_id, label_seed).result
        probe.saw("tracking number (step 4)", shipped["tracking_number"])
        done_at = probe.saw("completed at (wf.utc_now)", wf.utc_now())
        return {"order_id": order_id, "tracking_number": shipped["tracking_number"], "completed_at": done_at}

    return DemoTasks(workflow=fulfil_order, steps=(validate, charge, reserve, ship))


class Unacked(Middleware):
    """The messages a worker took and never finished: what RabbitMQ would redeliver.

    A message that ended in :class:`SimulatedCrash` counts as unacknowledged: the process
    that held it is gone.
    """

    def __init__(self) -> None:
        self._open: dict[int, dramatiq.Message[Any]] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        copy: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=message.queue_name,
            actor_name=message.actor_name,
            args=message.args,
            kwargs=message.kwargs,
            options=dict(message.options),
            message_id=message.message_id,
            message_timestamp=message.message_timestamp,
        )
        with self._lock:
            self._open[id(message)] = copy

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if not isinstance(exception, SimulatedCrash):
            self.after_skip_message(broker, message)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        with self._lock:
            self._open.pop(id(message), None)

    def messages(self) -> list[dramatiq.Message[Any]]:
        with self._lock:
            return list(self._open.values())


class DemoWorker:
    """One stand-in worker process: an app on its own stub broker, sharing the state store."""

    def __init__(self, state: MemoryState, probe: Probe, plan: CrashPlan) -> None:
        self.broker = StubBroker()
        self.unacked = Unacked()
        self.broker.add_middleware(self.unacked)
        self.app = Encore(broker=self.broker, state=state)
        self.tasks = declare(self.app, probe, plan)
        self._worker = dramatiq.Worker(self.broker, worker_threads=WORKER_THREADS, worker_timeout=20)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop(timeout=5_000)

    def undelivered(self) -> list[dramatiq.Message[Any]]:
        """After :meth:`stop`: the unacknowledged messages, then those still queued."""
        found = self.unacked.messages()
        for waiting in self.broker.queues.values():
            while True:
                try:
                    found.append(dramatiq.Message.decode(waiting.get_nowait()))
                except queue.Empty:
                    break
        return found

    def redeliver(self, messages: list[dramatiq.Message[Any]]) -> None:
        for message in messages:
            self.broker.enqueue(message)


@dataclasses.dataclass
class DemoReport:
    workflow_id: str
    interrupt_at: int
    probe: Probe
    redelivered: int
    result: dict[str, Any]
    resumed_seconds: float
    lease_refusals: int
    fast_path: bool

    @property
    def equal(self) -> bool:
        """Every value run 1 saw reappears unchanged, and every pass agrees."""
        names = self.probe.names()
        before = [n for n in names if self.probe.first("run 1", n) is not None]
        same = all(self.probe.first("run 1", n) == self.probe.first("resumed", n) for n in before)
        return bool(before) and same and self.probe.consistent()


def _run_until_crash(
    state: DemoState, probe: Probe, workflow_id: str, interrupt_at: int
) -> list[dramatiq.Message[Any]]:
    plan = CrashPlan(interrupt_at)
    worker_a = DemoWorker(state, probe, plan)
    worker_a.start()
    try:
        worker_a.tasks.workflow.send_with_options(args=(ORDER,), workflow_id=workflow_id)
        if not plan.entered.wait(TIMEOUT_S):
            status = worker_a.app.get_invocation(workflow_id).status
            raise DemoError(f"step {interrupt_at} never started within {TIMEOUT_S:.0f} s (workflow status {status})")
    finally:
        plan.pull_plug.set()  # the held step raises SimulatedCrash: worker A dies mid-step
        worker_a.stop()
    return worker_a.undelivered()


def _resume(
    state: DemoState, probe: Probe, workflow_id: str, messages: list[dramatiq.Message[Any]]
) -> dict[str, Any]:
    probe.run = "resumed"
    worker_b = DemoWorker(state, probe, CrashPlan(None))
    worker_b.redeliver(messages)
    worker_b.start()
    try:
        result: dict[str, Any] = worker_b.app.get_invocation(workflow_id).wait(timeout=TIMEOUT_S)
    except TimeoutError:
        raise DemoError(f"the resumed workflow did not finish within {TIMEOUT_S:.0f} s") from None
    finally:
        worker_b.stop()
    return result


def run_demo(interrupt_at: int = 2) -> DemoReport:
    """Play the scenario: run 1 crashes during step ``interrupt_at``, run 2 resumes it."""
    if not 1 <= interrupt_at <= len(STEPS):
        raise DemoError(f"--interrupt-at must be between 1 and {len(STEPS)}, got {interrupt_at}")
    state = DemoState()
    probe = Probe()
    # A fresh id per demo: the deterministic values differ from one demo to the next but
    # never between the two runs of one demo.
    workflow_id = f"demo-{ORDER['order_id']}-{secrets.token_hex(4)}"
    messages = _run_until_crash(state, probe, workflow_id, interrupt_at)
    started, refused_before = time.monotonic(), state.refused
    result = _resume(state, probe, workflow_id, messages)
    elapsed, refusals = time.monotonic() - started, state.refused - refused_before
    fast = load_settings().fast_path  # what both workers' apps read (ENCORE_FAST_PATH)
    return DemoReport(workflow_id, interrupt_at, probe, len(messages), result, elapsed, refusals, fast)


def _table(probe: Probe) -> list[str]:
    headers = ("value", "run 1 (before interrupt)", "resumed run")
    rows = [
        (n, probe.first("run 1", n) or NOT_REACHED, probe.first("resumed", n) or NOT_REACHED) for n in probe.names()
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(3)]

    def line(cells: tuple[str, str, str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), "-+-".join("-" * w for w in widths), *(line(row) for row in rows)]


#: The terms the report uses, printed under it.
TERMS = (
    "terms: a pass is one run of the workflow function from the top: each recorded step returns its",
    "  recorded value (replay) and the first unrecorded one sends its task and suspends the function;",
    "  a lease is a worker's hold on an invocation in the store, renewed while it runs, lapsing after a crash;",
    "  an unacknowledged message is one a worker took and never finished: RabbitMQ delivers it again;",
    "  deterministic values are wf.random/wf.uuid/wf.utc_now and step results, recorded on first use.",
)


def _lease_words(report: DemoReport) -> str:
    if report.lease_refusals:
        return f"was refused {report.lease_refusals} time(s) until worker A's lease expired ({LEASE_MS / 1000:g} s)"
    if report.fast_path:
        return "had no lease to wait for (the fast path runs a step's first pass before taking one)"
    return "had no lease to wait for (worker A's had lapsed)"


def print_report(report: DemoReport, out: TextIO = sys.stdout) -> None:
    step = report.interrupt_at
    probe = report.probe
    lines = [
        f"order {ORDER['order_id']}: {len(STEPS)} steps ({', '.join(STEPS)}), workflow {report.workflow_id}",
        f"run 1:   worker A crashed while step {step} ({STEPS[step - 1]}) was running",
        f"resumed: worker B (new broker, same state store) got {report.redelivered} unacknowledged message(s) back,",
        f"         {_lease_words(report)} and finished in {report.resumed_seconds:.2f} s",
        f"result:  {json.dumps(report.result)}",
        "",
        *_table(probe),
        "",
        f"workflow passes: {probe.count('run 1')} in run 1, {probe.count('resumed')} in the resumed run; "
        f"every pass saw the same values: {'yes' if probe.consistent() else 'NO'}",
        f"deterministic values equal: {'yes' if report.equal else 'NO'} (each value run 1 saw, in the resumed run)",
        "",
        *TERMS,
    ]
    out.write("\n".join(lines) + "\n")


def main(interrupt_at: int = 2, out: TextIO = sys.stdout) -> int:
    """Run the demo and print it; 0 when the values are equal, 1 otherwise."""
    report = run_demo(interrupt_at)
    print_report(report, out)
    return 0 if report.equal else 1
