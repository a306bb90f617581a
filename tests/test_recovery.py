"""Named regression tests of the engine's recovery paths (found or checked by the chaos runner)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from dramatiq_encore import Encore
from dramatiq_encore.actors.messages import ENVELOPE, NUDGES, RESENT, ResultEnvelope
from dramatiq_encore.broker_config.embedded import EmbeddedWorker
from dramatiq_encore.state import MemoryState
from tests.conftest import Harness

WAIT = 20


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def hit(self, key: str) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1


def _declare(app: Encore, counter: Counter, pause: float = 0.0) -> tuple[Any, Any]:
    @app.task
    def step(i: int) -> int:
        counter.hit(f"step:{i}")
        return i * 10

    @app.task
    def flow(n: int) -> list[int]:
        out = []
        for i in range(n):
            out.append(flow.wf.execute_task(step, i).result)
            time.sleep(pause)  # code between steps: a slow replay when pause is long
        return out

    return step, flow


class _CountNudges(Middleware):
    def __init__(self) -> None:
        self.nudges = 0

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        if NUDGES in message.options:
            self.nudges += 1


def test_result_arriving_while_the_parent_lease_is_held(harness: Harness) -> None:
    # Given a workflow whose pass after step 1 is slow (it holds the lease for 1 s)
    counter = Counter()
    nudges = _CountNudges()
    harness.app.broker.add_middleware(nudges)
    _, flow = _declare(harness.app, counter, pause=1.0)
    harness.start()
    inv = flow.send(2)
    state = harness.app.state
    assert _until(lambda: any('"e":"res"' in e for e in state.load(inv.invocation_id, 0)[1]))
    # When another result message for step 1 arrives while that pass runs
    envelope = ResultEnvelope(invocation_id=inv.invocation_id, step=1, child=f"{inv.invocation_id}/1")
    harness.app.broker.enqueue(flow.actor.message_with_options(args=(), **{ENVELOPE: envelope.model_dump()}))
    # Then it is re-sent shortly instead of waiting or failing, and nothing runs twice
    assert inv.wait(timeout=WAIT) == [0, 10]
    assert counter.counts == {"step:0": 1, "step:1": 1}
    assert nudges.nudges >= 1


def test_redelivered_start_after_the_workflow_finished(harness: Harness) -> None:
    counter = Counter()
    _, flow = _declare(harness.app, counter)
    harness.start()
    inv = flow.send_with_options(args=(3,), workflow_id="done-once")
    assert inv.wait(timeout=WAIT) == [0, 10, 20]
    # When the start message is delivered again (a redelivery after a crash)
    harness.app.broker.enqueue(flow.actor.message_with_options(args=(3,), workflow_id="done-once"))
    time.sleep(0.5)
    # Then nothing runs again and the result is unchanged
    assert counter.counts == {"step:0": 1, "step:1": 1, "step:2": 1}
    assert harness.app.get_invocation("done-once").wait(timeout=1) == [0, 10, 20]


def test_duplicate_result_for_a_finished_parent_is_harmless(harness: Harness) -> None:
    counter = Counter()
    _, flow = _declare(harness.app, counter)
    harness.start()
    inv = flow.send(2)
    assert inv.wait(timeout=WAIT) == [0, 10]
    envelope = ResultEnvelope(invocation_id=inv.invocation_id, step=2, child=f"{inv.invocation_id}/2")
    message = flow.actor.message_with_options(args=(), **{ENVELOPE: envelope.model_dump()})
    harness.app.broker.enqueue(message)
    time.sleep(0.5)
    assert counter.counts == {"step:0": 1, "step:1": 1}
    assert inv.wait(timeout=1) == [0, 10]


@contextlib.contextmanager
def _embedded(state: MemoryState, *middleware: Middleware) -> Iterator[tuple[Encore, EmbeddedWorker]]:
    """An app on its own stub broker (with extra middleware) and a worker to start once tasks exist."""
    broker = StubBroker()
    for extra in middleware:
        broker.add_middleware(extra)
    app = Encore(broker=broker, state=state)
    worker = EmbeddedWorker(broker, threads=4)
    try:
        yield app, worker
    finally:
        worker.stop()


def test_lease_renewed_during_a_slow_replay() -> None:
    # Given a lease of 300 ms and code between steps that takes 1 s
    counter = Counter()
    with _embedded(MemoryState(lease_ms=300)) as (app, worker):
        _, flow = _declare(app, counter, pause=1.0)
        worker.start()
        # Then the renewed lease keeps the pass alone: each step runs once, no conflict
        assert flow.send(2).wait(timeout=WAIT) == [0, 10]
        assert counter.counts == {"step:0": 1, "step:1": 1}


class _FailOnce(Middleware):
    """Fails the first publish of a child's start message: a crash between commit and publish."""

    def __init__(self) -> None:
        self.failed = False

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        envelope = message.options.get(ENVELOPE) or {}
        if not self.failed and envelope.get("kind") == "start":
            self.failed = True
            raise ConnectionError("broker went away after the commit")


def test_child_start_lost_between_commit_and_publish_is_republished() -> None:
    counter = Counter()
    with _embedded(MemoryState(), _FailOnce()) as (app, worker):
        _, flow = _declare(app, counter)
        worker.start()
        # The pass committed step 1, the publish failed, dramatiq retried the trigger: the
        # duplicate trigger re-sends the start of the step its pass created.
        assert flow.send(2).wait(timeout=WAIT) == [0, 10]
        assert counter.counts == {"step:0": 1, "step:1": 1}


class _FlakyOnce(MemoryState):
    """The store is unreachable for exactly one delivery (a restart, a failover)."""

    transient_errors = (ConnectionError,)

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def deliver(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise ConnectionError("store restarting")
        return super().deliver(*args, **kwargs)


def test_callback_survives_a_transient_store_error() -> None:
    called = threading.Event()
    with _embedded(_FlakyOnce()) as (app, worker):

        @dramatiq.actor(broker=app.broker, actor_name="on_done")
        def on_done(message: dict[str, Any], result: Any) -> None:
            called.set()

        @app.task
        def job() -> int:
            return 42

        worker.start()
        assert job.send_with_options(on_success=on_done).wait(timeout=WAIT) == 42
        assert called.wait(5), "on_success was lost with the re-sent message"


def _until(condition: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except AttributeError:
            pass
        time.sleep(0.01)
    return False


class _KeepStart(Middleware):
    """Keeps the first start message of ``actor`` as it was delivered."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.message: dramatiq.Message[Any] | None = None
        self.seen = threading.Event()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.actor_name == self.actor and self.message is None:
            self.message = message.copy()
            self.seen.set()


def test_a_child_longer_than_its_lease_shows_running_and_a_resent_start_does_not_run_it_again() -> None:
    # Given a lease of 300 ms and a child whose body takes 1.2 s (its first pass runs before
    # its delivery is made: the delivery comes from the window, which must keep the lease)
    counter = Counter()
    keep = _KeepStart("slow_child")
    with _embedded(MemoryState(lease_ms=300), keep) as (app, worker):

        @app.task
        def slow_child(i: int) -> int:
            counter.hit(f"child:{i}")
            time.sleep(1.2)
            return i + 1

        @app.task
        def parent() -> int:
            return int(parent.wf.execute_task(slow_child, 41).result)

        worker.start()
        inv = parent.send()
        assert keep.seen.wait(WAIT)
        child = app.get_invocation(f"{inv.invocation_id}/1")
        # Then while it runs its record reads running
        assert _until(lambda: child.status == "running", timeout=1.0)
        # When a repair re-sends its start (a marked copy) while it still runs
        assert keep.message is not None
        app.broker.enqueue(keep.message.copy(options={**keep.message.options, RESENT: True}))
        # Then the copy finds the lease held (renewed past 300 ms) and the body runs once
        assert inv.wait(timeout=WAIT) == 42
        time.sleep(0.5)
        assert counter.counts == {"child:41": 1}


class _Crash(BaseException):
    """Ends a pass like a killed worker: nothing after it is written, the message is not acked."""


def test_a_parent_resumed_in_place_that_dies_is_resumed_again() -> None:
    # Given parent and child on the same queue (the child's worker resumes the parent in
    # place, without a result message) and a parent pass that dies once after step 1
    counter = Counter()
    died = threading.Event()
    with _embedded(MemoryState(lease_ms=300)) as (app, worker):

        @app.task(min_backoff=10, max_backoff=20)
        def child(i: int) -> int:
            counter.hit(f"child:{i}")
            return i * 10

        @app.task
        def parent() -> int:
            first = parent.wf.execute_task(child, 1).result
            if not died.is_set():
                died.set()
                raise _Crash("the worker died while resuming the parent in place")
            return int(first + parent.wf.execute_task(child, 2).result)

        worker.start()
        inv = parent.send()
        # Then the child's start, retried, finds the parent stalled and sends its result again
        assert inv.wait(timeout=WAIT) == 30
        assert died.is_set()
        assert counter.counts == {"child:1": 1, "child:2": 1}
