"""The public contract (README: "A workflow", "Semantics"), on every backend pair of the ``harness``.

Each test declares its tasks on ``harness.app`` (each test gets a fresh broker, so names
only need to be unique within a test), starts the in-process worker and drives real
messages through it. Counters shared between the test and task bodies are thread-safe
because task bodies run on the worker's threads.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import itertools
import json
import pickle
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import Middleware
from pydantic import BaseModel

from dramatiq_encore import Encore, EncoreError, TaskError, WorkflowIdentity
from dramatiq_encore.actors.messages import ENVELOPE, ResultEnvelope
from tests.conftest import Harness

WAIT = 15.0  # an upper bound per wait; on the memory pair every workflow here ends in milliseconds
UTC = dt.UTC


# -- helpers -------------------------------------------------------------------------------


class Tally:
    """A thread-safe counter keyed by anything (task bodies run on worker threads)."""

    def __init__(self) -> None:
        self._counts: collections.Counter[Any] = collections.Counter()
        self._lock = threading.Lock()

    def add(self, key: Any = None) -> int:
        with self._lock:
            self._counts[key] += 1
            return self._counts[key]

    def __getitem__(self, key: Any) -> int:
        with self._lock:
            return self._counts[key]

    def snapshot(self) -> dict[Any, int]:
        with self._lock:
            return dict(self._counts)


class Log:
    """A thread-safe list."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()

    def append(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)

    @property
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)


class Processed(Middleware):
    """Observes which messages the worker has finished with, so a test can wait for them."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._cond = threading.Condition()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        with self._cond:
            self._seen.add(message.message_id)
            self._cond.notify_all()

    after_skip_message = after_process_message

    def wait_for(self, message_ids: Iterable[str], timeout: float = WAIT) -> None:
        wanted = set(message_ids)
        with self._cond:
            assert self._cond.wait_for(lambda: wanted <= self._seen, timeout), f"unprocessed: {wanted - self._seen}"


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def journal(app: Encore, invocation_id: str) -> list[dict[str, Any]]:
    _, raw = app.state.load(invocation_id, 0)
    return [json.loads(text) for text in raw]


def is_uuid4(text: str) -> bool:
    value = uuid.UUID(text)
    return value.version == 4 and value.variant == uuid.RFC_4122 and str(value) == text


def declare_noop(app: Encore) -> Any:
    @app.task
    def noop(i: int) -> int:
        return i

    return noop


# Types used in task annotations live at module level so the codec can resolve them.
class Item(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    order_id: str
    items: list[Item]
    placed_at: dt.datetime


class Receipt(BaseModel):
    order_id: str
    total_qty: int
    placed_at: dt.datetime
    lines: dict[str, list[int]]


# -- 2.1 replay returns recorded values ----------------------------------------------------


def test_2_1_replay_returns_recorded_values(harness: Harness) -> None:
    app = harness.app
    passes = Log()
    effect_calls = Tally()
    noop = declare_noop(app)

    @app.task
    def write_k(value: str) -> None:
        write_k.wf.set_data("k", value)

    @app.task(max_retries=0)
    def explode() -> None:
        raise ValueError("boom")

    @app.task
    def recorder() -> dict[str, Any]:
        wf = recorder.wf
        wf.execute_task(write_k, "old")  # step 1: k = "old"
        first = {
            "random": wf.random(),
            "uuid": wf.uuid(),
            "now": wf.utc_now().isoformat(),
            "effect": wf.side_effect("effect", lambda: effect_calls.add()),
            "data": wf.get_data("k"),
        }
        passes.append(("values", first))
        wf.execute_task(write_k, "new")  # step 2: another invocation changes k
        child = wf.execute_task(noop, 7)  # step 3
        try:
            wf.execute_task(explode)  # step 4 fails
            error = None
        except TaskError as e:
            error = [e.error_type, e.message, e.invocation_id]
        passes.append(("steps", child.result, child.invocation_id, error))
        wf.execute_task(noop, 8)  # step 5: one more replay after the failed step
        return {**first, "data_now": wf.get_data("k"), "error": error}

    harness.start()
    before = dt.datetime.now(UTC)
    inv = recorder.send()
    result = inv.wait(timeout=WAIT)

    values = [p[1] for p in passes.items if p[0] == "values"]
    steps = [p[1:] for p in passes.items if p[0] == "steps"]
    assert len(values) >= 5 and all(v == values[0] for v in values)  # replayed on every later pass
    assert len(steps) >= 2 and all(s == steps[0] for s in steps)
    assert {k: result[k] for k in values[0]} == values[0]
    assert result["data"] == "old" and result["data_now"] == "new"
    assert effect_calls.snapshot() == {None: 1} and result["effect"] == 1
    assert steps[0][:2] == (7, f"{inv.invocation_id}/3")
    assert result["error"] == ["ValueError", "boom", f"{inv.invocation_id}/4"]
    assert before <= dt.datetime.fromisoformat(result["now"]) <= dt.datetime.now(UTC)
    assert 0 <= result["random"] < 1 and is_uuid4(result["uuid"])


# -- 2.2 per-kind streams, never shared between invocations -----------------------------------


def test_2_2_parent_and_child_streams_differ(harness: Harness) -> None:
    app = harness.app

    @app.task
    def joined() -> list[Any]:
        return [joined.wf.uuid(), joined.wf.random()]

    @app.task(force_new_workflow=True)
    def separate() -> list[Any]:
        return [separate.wf.uuid(), separate.wf.random()]

    @app.task
    def parent() -> dict[str, list[Any]]:
        mine = [parent.wf.uuid(), parent.wf.random()]
        return {
            "parent": mine,
            "joined": parent.wf.execute_task(joined).result,
            "separate": parent.wf.execute_task(separate).result,
        }

    harness.start()
    first = parent.send().wait(timeout=WAIT)
    second = parent.send().wait(timeout=WAIT)

    uuids = [v[0] for run in (first, second) for v in run.values()]
    randoms = [v[1] for run in (first, second) for v in run.values()]
    assert len(set(uuids)) == 6 and all(is_uuid4(u) for u in uuids)
    assert len(set(randoms)) == 6


# -- 2.3 utc_now ---------------------------------------------------------------------------


def test_2_3_utc_now_is_real_recorded_and_strictly_increasing(harness: Harness) -> None:
    app = harness.app
    first_reads = Log()

    @app.task
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    @app.task
    def timed() -> dict[str, Any]:
        wf = timed.wf
        burst = [wf.utc_now() for _ in range(500)]
        first_reads.append(burst[0])
        wf.execute_task(nap, 0.25)
        later = wf.utc_now()
        wf.execute_task(nap, 0.0)
        return {"burst": [t.isoformat() for t in burst], "later": later.isoformat()}

    harness.start()
    before = dt.datetime.now(UTC)
    result = timed.send().wait(timeout=WAIT)
    after = dt.datetime.now(UTC)

    burst = [dt.datetime.fromisoformat(t) for t in result["burst"]]
    later = dt.datetime.fromisoformat(result["later"])
    assert all(t.utcoffset() == dt.timedelta(0) for t in burst)
    assert before <= burst[0] and later <= after  # the real clock
    assert all(a < b for a, b in itertools.pairwise(burst))  # strictly increasing, even when fast
    assert later - burst[-1] >= dt.timedelta(seconds=0.25)  # elapsed time shows
    assert len(first_reads.items) >= 3 and set(first_reads.items) == {burst[0]}  # replays the recorded value


# -- 2.4 positional steps and non-determinism ------------------------------------------------


def test_2_4_identical_calls_are_two_steps_and_both_run(harness: Harness) -> None:
    app = harness.app
    runs = Tally()

    @app.task
    def ping(tag: str) -> int:
        return runs.add(tag)

    @app.task
    def twice() -> list[Any]:
        a = twice.wf.execute_task(ping, "same")
        b = twice.wf.execute_task(ping, "same")
        return [a.invocation_id, b.invocation_id, a.result, b.result]

    harness.start()
    inv = twice.send()
    first_id, second_id, first, second = inv.wait(timeout=WAIT)

    assert runs["same"] == 2
    assert (first_id, second_id) == (f"{inv.invocation_id}/1", f"{inv.invocation_id}/2")
    assert sorted([first, second]) == [1, 2]


@pytest.mark.parametrize(
    ("change", "user_catches"),
    [
        pytest.param("task", False, id="other-task"),
        pytest.param("args", False, id="other-arguments"),
        pytest.param("task", True, id="other-task-caught-by-user-code"),
    ],
)
def test_2_4_changed_code_fails_with_nondeterminism(harness: Harness, change: str, user_catches: bool) -> None:
    app = harness.app
    code = {"changed": False}  # the "deployed code": flipped while step 1 runs
    started, release = threading.Event(), threading.Event()
    passes = Tally()
    noop = declare_noop(app)

    @app.task
    def slow_step(n: int) -> int:
        started.set()
        release.wait(WAIT)
        return n

    @app.task
    def other_step(n: int) -> int:
        return n

    def step_1() -> Any:
        if not code["changed"]:
            return evolving.wf.execute_task(slow_step, 1)
        if change == "task":
            return evolving.wf.execute_task(other_step, 1)
        return evolving.wf.execute_task(slow_step, 2)

    @app.task
    def evolving() -> str:
        passes.add()
        if not user_catches:
            step_1()
            return "finished"
        with contextlib.suppress(Exception):
            step_1()
        evolving.wf.execute_task(noop, 1)  # carrying on must not help
        return "carried on"

    harness.start()
    # Given step 1 was recorded as slow_step(1) and is running
    inv = evolving.send()
    assert started.wait(WAIT)
    # When the code changes before step 1's result comes back
    code["changed"] = True
    release.set()
    # Then the replay fails with NonDeterminismError naming workflow, step, recorded and requested
    with pytest.raises(TaskError) as caught:
        inv.wait(timeout=WAIT)
    error = caught.value
    assert error.error_type == "NonDeterminismError"
    requested = "other_step(" if change == "task" else "slow_step("
    for text in (inv.invocation_id, "step 1", "slow_step(", requested):
        assert text in error.message
    digests = re.findall(r"args digest (\w+)", error.message)
    assert len(digests) == 2 and (change == "task" or digests[0] != digests[1])
    assert str(error).startswith("NonDeterminismError: ")
    copy = pickle.loads(pickle.dumps(error))  # crosses processes as text, not as a pickled user exception
    assert (copy.error_type, copy.message, copy.invocation_id) == (error.error_type, error.message, inv.invocation_id)
    # And the invocation stays failed: no retry, no loop
    count = passes[None]
    time.sleep(0.3)
    assert inv.status == "failed" and passes[None] == count == 2


# -- 2.5 set_data applied once ---------------------------------------------------------------


def test_2_5_set_data_is_not_rolled_back_on_replay(harness: Harness) -> None:
    app = harness.app
    noop = declare_noop(app)

    @app.task
    def overwrite(value: int) -> None:
        overwrite.wf.set_data("k", value)

    @app.task
    def setter() -> Any:
        setter.wf.set_data("k", 1)
        setter.wf.execute_task(overwrite, 2)  # another invocation of the workflow sets k = 2
        setter.wf.execute_task(noop, 0)  # two more replays pass over set_data("k", 1)
        setter.wf.execute_task(noop, 1)
        return setter.wf.get_data("k")

    harness.start()
    inv = setter.send()
    seen: list[Any] = []
    done = threading.Event()

    def outside_reader() -> None:
        while not done.is_set():
            value = app.get_workflow_data(inv.invocation_id).get("k")
            if not seen or seen[-1] != value:
                seen.append(value)
            time.sleep(0.001)

    reader = threading.Thread(target=outside_reader)
    reader.start()
    try:
        result = inv.wait(timeout=WAIT)
    finally:
        done.set()
        reader.join(WAIT)

    assert result == 2
    assert app.get_workflow_data(inv.invocation_id) == {"k": 2}
    assert seen[-1] == 2 and 1 not in seen[seen.index(2) :]  # never back to the older value


# -- 2.6 suspension is a BaseException -------------------------------------------------------


def test_2_6_except_exception_does_not_swallow_the_suspension(harness: Harness) -> None:
    app = harness.app
    noop = declare_noop(app)

    @app.task
    def seed_style() -> str:
        try:
            first = seed_style.wf.execute_task(noop, 5)
            second = seed_style.wf.execute_task(noop, 6)
        except Exception as e:
            return f"swallowed {e!r}"
        return f"got {first.result} and {second.result}"

    harness.start()
    assert seed_style.send().wait(timeout=WAIT) == "got 5 and 6"


def test_2_6_swallowing_the_suspension_fails_with_misuse_error(harness: Harness) -> None:
    app = harness.app
    noop = declare_noop(app)

    @app.task
    def greedy() -> str:
        try:
            greedy.wf.execute_task(noop, 5)
        except BaseException:
            return "swallowed"
        return "never"

    harness.start()
    started = time.monotonic()
    with pytest.raises(TaskError) as caught:
        greedy.send().wait(timeout=WAIT)

    assert caught.value.error_type == "MisuseError"
    assert "BaseException" in caught.value.message
    assert time.monotonic() - started < WAIT / 2  # failed at once, no hang and no retries


# -- 2.7 a failed child raises TaskError at its step, on every replay ----------------------------


def test_2_7_failed_child_raises_task_error_on_every_replay(harness: Harness) -> None:
    app = harness.app
    attempts = Tally()
    seen = Log()
    noop = declare_noop(app)

    @app.task(max_retries=1, min_backoff=10, max_backoff=20)
    def flaky_charge(order_id: str) -> None:
        attempts.add()
        raise RuntimeError(f"card declined for {order_id}")

    @app.task
    def payer(order_id: str) -> dict[str, Any]:
        try:
            payer.wf.execute_task(flaky_charge, order_id)
        except TaskError as e:
            seen.append((e.error_type, e.message, e.invocation_id))
            payer.wf.execute_task(noop, 1)  # compensate, then replay past the failed step again
            return {"error_type": e.error_type, "message": e.message, "text": str(e)}
        return {"error_type": None}

    harness.start()
    inv = payer.send("A-1")
    result = inv.wait(timeout=WAIT)

    assert attempts[None] == 2  # the first attempt and one retry
    expected = ("RuntimeError", "card declined for A-1", f"{inv.invocation_id}/1")
    assert len(seen.items) >= 2 and set(seen.items) == {expected}
    assert result == {
        "error_type": "RuntimeError", "message": "card declined for A-1", "text": "RuntimeError: card declined for A-1"
    }
    failed_child = app.get_invocation(f"{inv.invocation_id}/1")
    assert failed_child.status == "failed"
    with pytest.raises(TaskError, match="card declined"):
        _ = failed_child.result


def test_2_7_uncaught_child_failure_fails_the_parent_with_the_child_error(harness: Harness) -> None:
    app = harness.app

    @app.task(max_retries=0)
    def reject(order_id: str) -> None:
        raise LookupError(f"unknown order {order_id}")

    @app.task
    def careless(order_id: str) -> None:
        careless.wf.execute_task(reject, order_id)

    harness.start()
    inv = careless.send("Z-9")
    with pytest.raises(TaskError) as caught:
        inv.wait(timeout=WAIT)

    assert (caught.value.error_type, caught.value.message) == ("LookupError", "unknown order Z-9")
    assert caught.value.invocation_id == f"{inv.invocation_id}/1"  # names the invocation that failed
    assert "LookupError" in caught.value.traceback
    assert inv.status == "failed"


# -- 2.8 at-least-once messages, exactly-once steps ----------------------------------------------


def _result_message(task: Any, invocation_id: str, step: int) -> dramatiq.Message[Any]:
    envelope = ResultEnvelope(invocation_id=invocation_id, step=step, child=f"{invocation_id}/{step}")
    return dramatiq.Message(
        queue_name=task.queue_name, actor_name=task.name, args=(), kwargs={},
        options={ENVELOPE: envelope.model_dump(mode="json")},
    )


def test_2_8_duplicated_result_message_is_recorded_once(harness: Harness) -> None:
    app = harness.app
    processed = Processed()
    app.broker.add_middleware(processed)
    runs, finishes = Tally(), Tally()
    gate, gated_started = threading.Event(), threading.Event()

    @app.task
    def quick(i: int) -> int:
        runs.add(("quick", i))
        return i

    @app.task
    def gated(i: int) -> int:
        runs.add(("gated", i))
        gated_started.set()
        gate.wait(WAIT)
        return i

    @app.task
    def two_steps() -> int:
        a = two_steps.wf.execute_task(quick, 1)
        b = two_steps.wf.execute_task(gated, 2)
        finishes.add()
        return int(a.result + b.result)

    harness.start()
    inv = two_steps.send()
    wid = inv.invocation_id
    # Given step 1 resolved and step 2's child is running
    assert gated_started.wait(WAIT)
    assert wait_until(lambda: inv.status == "suspended")
    # (a child's first pass runs at once; its record is made when needed, or half a second on)
    assert wait_until(lambda: app.get_invocation(f"{wid}/2").status == "running")
    # When step 1's result message arrives five more times, all at once
    copies = [_result_message(two_steps, wid, 1) for _ in range(5)]
    for message in copies:
        app.broker.enqueue(message)
    processed.wait_for(m.message_id for m in copies)
    # Then nothing is recorded again and step 2's child is not started again
    assert [e["n"] for e in journal(app, wid) if e["e"] == "res"] == [1]
    gate.set()
    assert inv.wait(timeout=WAIT) == 3
    # And duplicates arriving after the end change nothing either
    late = [_result_message(two_steps, wid, n) for n in (1, 2, 1, 2)]
    for message in late:
        app.broker.enqueue(message)
    processed.wait_for(m.message_id for m in late)
    assert [e["n"] for e in journal(app, wid) if e["e"] == "res"] == [1, 2]
    assert runs.snapshot() == {("quick", 1): 1, ("gated", 2): 1}
    assert finishes[None] == 1 and inv.status == "succeeded" and inv.result == 3


def test_2_8_concurrent_duplicate_starts_create_each_child_once(harness: Harness) -> None:
    app = harness.app
    processed = Processed()
    app.broker.add_middleware(processed)
    runs, finishes = Tally(), Tally()

    @app.task
    def child(step: int) -> int:
        runs.add(step)
        time.sleep(0.02)
        return step

    @app.task
    def three_steps() -> list[int]:
        results = [three_steps.wf.execute_task(child, n).result for n in (1, 2, 3)]
        finishes.add()
        return results

    harness.start()
    # Given one start message (one message_id, so one workflow id) ...
    start: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=three_steps.queue_name, actor_name=three_steps.name, args=(), kwargs={}, options={}
    )
    # When it is delivered four times at once
    for _ in range(4):
        app.broker.enqueue(start)
    result = app.get_invocation(start.message_id).wait(timeout=WAIT)
    processed.wait_for([start.message_id])

    # Then each step created and ran its child once and the workflow finished once
    assert result == [1, 2, 3]
    assert runs.snapshot() == {1: 1, 2: 1, 3: 1}
    assert finishes[None] == 1
    steps = [e for e in journal(app, start.message_id) if e["e"] == "step"]
    assert [s["child"] for s in steps] == [f"{start.message_id}/{n}" for n in (1, 2, 3)]


# -- section 1: handles, ids, retries, callbacks, pipelines -----------------------------------


def test_unknown_invocation_reads_pending_and_wait_times_out(harness: Harness) -> None:
    harness.start()
    handle = harness.app.get_invocation(f"never-sent-{uuid.uuid4().hex}")

    assert handle.status == "pending"
    assert handle.result is None
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        handle.wait(timeout=0.2)
    assert 0.19 <= time.monotonic() - started < 2


def test_child_invocation_ids_start_with_the_root_workflow_id(harness: Harness) -> None:
    app = harness.app
    noop = declare_noop(app)

    @app.task(force_new_workflow=True)
    def middle() -> list[str]:
        return [middle.wf.execute_task(noop, n).invocation_id for n in (1, 2)]

    @app.task
    def top() -> dict[str, Any]:
        step = top.wf.execute_task(middle)
        return {"middle": step.invocation_id, "leaves": step.result}

    harness.start()
    inv = top.send()
    result = inv.wait(timeout=WAIT)

    root = inv.invocation_id
    ids = [result["middle"], *result["leaves"]]
    assert ids == [f"{root}/1", f"{root}/1/1", f"{root}/1/2"]
    for invocation_id in ids:  # any process can locate them, and they know their root
        handle = app.get_invocation(invocation_id)
        assert handle.status == "succeeded"
        assert handle.workflow.root_workflow_id == root
    assert app.get_invocation(f"{root}/1/2").workflow.workflow_id == f"{root}/1"  # joins middle's workflow


@pytest.mark.parametrize("char", ["{", "}", "/"])
def test_workflow_ids_with_reserved_characters_are_refused(harness: Harness, char: str) -> None:
    app = harness.app

    @app.task
    def job() -> None:
        return None

    harness.start()
    bad = f"order{char}42"
    with pytest.raises(EncoreError) as caught:
        job.send_with_options(args=(), workflow_id=bad)

    assert repr(char) in str(caught.value) and "workflow_id" in str(caught.value)
    assert app.get_invocation(bad).status == "pending"


def test_default_retries_and_per_task_overrides(harness: Harness) -> None:
    app = harness.app
    attempts = Tally()

    @app.task
    def defaults() -> None:
        return None

    @app.task(max_retries=2, min_backoff=10, max_backoff=20)
    def twice_retried(tag: str) -> None:
        attempts.add(tag)
        raise RuntimeError(tag)

    @app.task(throws=(KeyError,), min_backoff=10, max_backoff=20)
    def never_retried(tag: str) -> None:
        attempts.add(tag)
        raise KeyError(tag)

    @app.task(retry_when=lambda retries, exc: retries < 1, min_backoff=10, max_backoff=20)
    def retried_when(tag: str) -> None:
        attempts.add(tag)
        raise ValueError(tag)

    options = defaults.actor.options
    assert (options["max_retries"], options["min_backoff"], options["max_backoff"]) == (3, 1_000, 30_000)
    assert twice_retried.actor.options["max_retries"] == 2
    harness.start()

    for task, tag, error_type, runs in (
        (twice_retried, "max", "RuntimeError", 3),
        (never_retried, "throws", "KeyError", 1),
        (retried_when, "when", "ValueError", 2),
    ):
        with pytest.raises(TaskError) as caught:
            task.send(tag).wait(timeout=WAIT)
        assert caught.value.error_type == error_type
        time.sleep(0.1)  # a retry the policy forbids would show up here
        assert attempts[tag] == runs, tag


def test_workflow_retried_after_a_user_error_replays_its_steps(harness: Harness) -> None:
    app = harness.app
    runs, passes = Tally(), Tally()

    @app.task
    def charge(order_id: str) -> str:
        runs.add(order_id)
        return f"paid {order_id}"

    @app.task(max_retries=2, min_backoff=10, max_backoff=20)
    def shaky(order_id: str) -> list[str]:
        paid = shaky.wf.execute_task(charge, order_id).result
        if passes.add() == 1:
            raise ConnectionError("inventory service hiccup")  # after step 1, once
        return [paid, shaky.wf.execute_task(charge, order_id + "-fee").result]

    harness.start()
    # When the workflow body raises once after step 1 and dramatiq retries it
    result = shaky.send("A-1").wait(timeout=WAIT)
    # Then the retry replays step 1 instead of running its child again
    assert result == ["paid A-1", "paid A-1-fee"]
    assert runs.snapshot() == {"A-1": 1, "A-1-fee": 1}
    assert passes[None] == 3


def test_on_success_and_on_failure_fire_once_at_completion(harness: Harness) -> None:
    app = harness.app
    calls = Log()
    noop = declare_noop(app)

    def order_done(message_data: dict[str, Any], result: Any) -> None:
        calls.append(("success", message_data["actor_name"], result))

    def order_failed(message_data: dict[str, Any], error: dict[str, Any]) -> None:
        calls.append(("failure", message_data["actor_name"], error))

    # Plain dramatiq actors, on the app's queue (on RabbitMQ each test has its own)
    done_actor = dramatiq.actor(broker=app.broker, queue_name=app.default_queue)(order_done)
    failed_actor = dramatiq.actor(broker=app.broker, queue_name=app.default_queue)(order_failed)

    @app.task(on_success="order_done")
    def three_steps(n: int) -> int:
        return sum(three_steps.wf.execute_task(noop, n + i).result for i in range(3))

    @app.task
    def also_three_steps(n: int) -> int:
        return sum(also_three_steps.wf.execute_task(noop, n + i).result for i in range(3))

    @app.task(max_retries=1, min_backoff=10, max_backoff=20)
    def doomed() -> None:
        raise RuntimeError("no stock")

    harness.start()
    wid = f"order-{uuid.uuid4().hex[:8]}"
    assert three_steps.send_with_options(args=(10,), workflow_id=wid).wait(timeout=WAIT) == 33
    assert also_three_steps.send_with_options(args=(1,), on_success=done_actor).wait(timeout=WAIT) == 6
    with pytest.raises(TaskError):
        doomed.send_with_options(on_failure=failed_actor).wait(timeout=WAIT)

    assert wait_until(lambda: len(calls.items) >= 3)
    # A duplicate start of the finished workflow does not fire the callback again
    assert three_steps.send_with_options(args=(10,), workflow_id=wid).wait(timeout=WAIT) == 33
    time.sleep(0.3)  # a second call would show up here
    assert sorted(calls.items, key=repr) == sorted(
        [
            ("success", "three_steps", 33),
            ("success", "also_three_steps", 6),
            ("failure", "doomed", {"type": "RuntimeError", "message": "no stock"}),
        ],
        key=repr,
    )


def test_pipelines_are_refused(harness: Harness) -> None:
    app = harness.app

    with pytest.raises(EncoreError, match="pipe_ignore"):

        @app.task(pipe_ignore=True)
        def ignored() -> None:
            return None

    @app.task
    def first() -> int:
        return 1

    @app.task
    def second(value: int) -> int:
        return value

    harness.start()
    with pytest.raises(EncoreError, match="pipe_target"):
        first.send_with_options(pipe_target=second.actor.message(), workflow_id="piped")
    assert app.get_invocation("piped").status == "pending"


# -- identity ------------------------------------------------------------------------------


def test_root_workflow_id_is_the_root_invocation_id(harness: Harness) -> None:
    app = harness.app

    @app.task
    def root() -> dict[str, Any]:
        return root.workflow.model_dump()

    harness.start()
    inv = root.send()
    identity = inv.wait(timeout=WAIT)

    assert identity == {
        "workflow_id": inv.invocation_id, "parent_workflow_id": None,
        "root_workflow_id": inv.invocation_id, "workflow_type": "root",
    }
    assert inv.workflow == WorkflowIdentity.model_validate(identity)
    assert app.get_invocation(inv.invocation_id).workflow.workflow_id == inv.invocation_id
    named = root.send_with_options(workflow_id="order-A-1")
    assert named.invocation_id == "order-A-1" and named.wait(timeout=WAIT)["workflow_id"] == "order-A-1"


def test_plain_child_joins_the_caller_workflow_and_shares_its_data(harness: Harness) -> None:
    app = harness.app

    @app.task
    def helper_step() -> dict[str, Any]:
        seen = helper_step.wf.get_data("from_parent")
        helper_step.wf.set_data("from_child", "hi parent")
        return {"identity": helper_step.workflow.model_dump(), "seen": seen}

    @app.task
    def caller() -> dict[str, Any]:
        caller.wf.set_data("from_parent", "hi child")
        step = caller.wf.execute_task(helper_step)
        return {**step.result, "step_workflow": step.workflow.workflow_id, "back": caller.wf.get_data("from_child")}

    harness.start()
    inv = caller.send()
    result = inv.wait(timeout=WAIT)

    wid = inv.invocation_id
    assert result["identity"] == {
        "workflow_id": wid, "parent_workflow_id": None, "root_workflow_id": wid, "workflow_type": "caller"
    }
    assert result["step_workflow"] == wid
    assert (result["seen"], result["back"]) == ("hi child", "hi parent")
    assert app.get_workflow_data(wid) == {"from_parent": "hi child", "from_child": "hi parent"}


def test_force_new_workflow_child_has_its_own_id_and_parent_and_root_set(harness: Harness) -> None:
    app = harness.app

    @app.task(force_new_workflow=True)
    def spawned() -> dict[str, Any]:
        spawned.wf.set_data("mine", True)
        return {"identity": spawned.workflow.model_dump(), "parent_data": spawned.wf.get_data("k", "invisible")}

    @app.task
    def mid() -> str:
        return mid.wf.execute_task(spawned).workflow.workflow_id

    @app.task
    def origin() -> dict[str, Any]:
        origin.wf.set_data("k", "parent only")
        direct = origin.wf.execute_task(spawned)
        nested = origin.wf.execute_task(mid)
        return {"direct": direct.result, "direct_id": direct.workflow.workflow_id, "nested": nested.result}

    harness.start()
    inv = origin.send()
    result = inv.wait(timeout=WAIT)

    root = inv.invocation_id
    child_id = f"{root}/1"
    assert result["direct"]["identity"] == {
        "workflow_id": child_id, "parent_workflow_id": root, "root_workflow_id": root, "workflow_type": "spawned"
    }
    assert result["direct_id"] == child_id and result["direct"]["parent_data"] == "invisible"
    assert app.get_invocation(child_id).workflow.parent_workflow_id == root
    # A grandchild started from a plain child: its parent is the workflow it was started from
    grandchild = app.get_invocation(result["nested"]).workflow
    assert (grandchild.workflow_id, grandchild.parent_workflow_id, grandchild.root_workflow_id) == (
        f"{root}/2/1", root, root
    )
    assert app.get_workflow_data(child_id) == {"mine": True}
    assert app.get_workflow_data(root) == {"k": "parent only"}


def test_wf_resolves_to_the_invocation_running_in_the_current_thread(harness: Harness) -> None:
    app = harness.app
    both_running = threading.Barrier(2, timeout=WAIT)

    @app.task
    def unrelated() -> None:
        return None

    def shared_helper() -> dict[str, Any]:
        # Reaches the running invocation through a task object that is not running
        return {"workflow_id": unrelated.workflow.workflow_id, "uuid": unrelated.wf.uuid()}

    @app.task
    def alpha(concurrent: bool) -> dict[str, Any]:
        if concurrent:
            both_running.wait()
        mine = shared_helper()
        if concurrent:
            both_running.wait()
        return {**mine, "own": alpha.workflow.workflow_id, "own_uuid": alpha.wf.uuid()}

    @app.task
    def beta() -> dict[str, Any]:
        both_running.wait()
        mine = shared_helper()
        both_running.wait()
        return {**mine, "own": beta.workflow.workflow_id, "own_uuid": beta.wf.uuid()}

    harness.start()
    a, b = alpha.send(True), beta.send()
    ra, rb = a.wait(timeout=WAIT), b.wait(timeout=WAIT)
    later = alpha.send(False)
    rl = later.wait(timeout=WAIT)

    for handle, result in ((a, ra), (b, rb), (later, rl)):
        assert result["workflow_id"] == result["own"] == handle.invocation_id
        assert result["uuid"] != result["own_uuid"]
    assert len({ra["uuid"], rb["uuid"], rl["uuid"]}) == 3


def test_send_inside_a_task_starts_a_new_root_workflow(harness: Harness) -> None:
    app = harness.app

    @app.task
    def audit(note: str) -> dict[str, Any]:
        return audit.workflow.model_dump()

    @app.task
    def launcher() -> str:
        return audit.send("from a task").invocation_id

    harness.start()
    inv = launcher.send()
    started = inv.wait(timeout=WAIT)

    identity = app.get_invocation(started).wait(timeout=WAIT)
    assert started != inv.invocation_id and "/" not in started
    assert identity == {"workflow_id": started, "parent_workflow_id": None, "root_workflow_id": started,
                        "workflow_type": "audit"}


def test_wf_and_workflow_outside_a_running_task_raise(harness: Harness) -> None:
    app = harness.app

    @app.task
    def lonely() -> None:
        return None

    with pytest.raises(EncoreError, match="no workflow is running"):
        lonely.wf.uuid()
    with pytest.raises(EncoreError, match="no workflow is running"):
        _ = lonely.workflow
    harness.start()
    lonely.send().wait(timeout=WAIT)
    with pytest.raises(EncoreError, match="no workflow is running"):  # nothing leaks from the worker
        _ = lonely.wf


# -- arguments and results -----------------------------------------------------------------


def test_models_datetimes_and_nested_values_round_trip(harness: Harness) -> None:
    app = harness.app

    @app.task
    def price(order: Order, when: dt.datetime, extra: dict[str, list[int]]) -> Receipt:
        assert isinstance(order, Order) and isinstance(order.items[0], Item) and isinstance(when, dt.datetime)
        return Receipt(
            order_id=order.order_id, total_qty=sum(i.qty for i in order.items), placed_at=when, lines=extra
        )

    @app.task
    def checkout(order: Order) -> dict[str, Any]:
        step = checkout.wf.execute_task(price, order, order.placed_at, {"a": [1, 2], "b": []})
        receipt = step.result
        return {"is_receipt": isinstance(receipt, Receipt), "receipt": receipt, "nested": [{"x": [1, {"y": None}]}]}

    harness.start()
    placed = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    order = Order(order_id="A-1", items=[Item(sku="x", qty=2), Item(sku="y", qty=3)], placed_at=placed)
    receipt = price.send(order, placed, {"k": [7]}).wait(timeout=WAIT)
    flow = checkout.send(order).wait(timeout=WAIT)

    assert receipt == Receipt(order_id="A-1", total_qty=5, placed_at=placed, lines={"k": [7]})
    assert flow["is_receipt"] is True
    assert flow["receipt"] == {
        "order_id": "A-1", "total_qty": 5, "placed_at": placed.isoformat().replace("+00:00", "Z"),
        "lines": {"a": [1, 2], "b": []},
    }
    assert flow["nested"] == [{"x": [1, {"y": None}]}]


def test_invalid_argument_fails_the_invocation_and_the_worker_keeps_serving(harness: Harness) -> None:
    app = harness.app

    @app.task
    def ship(order: Order) -> int:
        return len(order.items)

    harness.start()
    # Given a producer that sends an item whose qty is not an integer
    bad: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=ship.queue_name, actor_name=ship.name, kwargs={}, options={},
        args=({"order_id": "A-1", "items": [{"sku": "x", "qty": "many"}], "placed_at": "2024-05-01T12:00:00Z"},),
    )
    app.broker.enqueue(bad)
    # Then that invocation fails with a ValidationError naming the task and the field
    with pytest.raises(TaskError) as caught:
        app.get_invocation(bad.message_id).wait(timeout=WAIT)
    assert caught.value.error_type == "ValidationError"
    assert "ship" in caught.value.message and "qty" in caught.value.message
    # And the next message is served
    good = Order(order_id="A-2", items=[Item(sku="x", qty=1)], placed_at=dt.datetime.now(UTC))
    assert ship.send(good).wait(timeout=WAIT) == 1


def test_unserialisable_result_fails_with_a_clear_message(harness: Harness) -> None:
    app = harness.app

    class Opaque:
        pass

    @app.task
    def leaky() -> Any:
        return {"handle": Opaque()}

    @app.task
    def caller() -> str:
        try:
            caller.wf.execute_task(leaky)
        except TaskError as e:
            return e.error_type
        return "no error"

    harness.start()
    with pytest.raises(TaskError) as caught:
        leaky.send().wait(timeout=WAIT)
    assert caught.value.error_type == "ResultSerializationError"
    assert "leaky" in caught.value.message and "serialis" in caught.value.message
    assert caller.send().wait(timeout=WAIT) == "ResultSerializationError"


# -- idempotent start ------------------------------------------------------------------------


def test_same_workflow_id_runs_once_and_both_handles_see_the_result(harness: Harness) -> None:
    app = harness.app
    runs = Tally()

    @app.task
    def charge(order_id: str) -> str:
        runs.add(order_id)
        return f"charged {order_id} {charge.wf.uuid()}"

    @app.task
    def place(order_id: str) -> str:
        return str(place.wf.execute_task(charge, order_id).result)

    harness.start()
    wid = f"order-{uuid.uuid4().hex[:8]}"
    first = place.send_with_options(args=("A-1",), workflow_id=wid)
    second = place.send_with_options(args=("A-1",), workflow_id=wid)
    result = first.wait(timeout=WAIT)
    third = place.send_with_options(args=("A-1",), workflow_id=wid)  # after it finished

    assert first.invocation_id == second.invocation_id == third.invocation_id == wid
    assert second.wait(timeout=WAIT) == third.wait(timeout=WAIT) == result
    time.sleep(0.1)
    assert runs["A-1"] == 1


def test_reusing_a_workflow_id_with_other_arguments_is_a_conflict(harness: Harness) -> None:
    app = harness.app

    @app.task
    def place(order_id: str) -> str:
        return order_id

    harness.start()
    wid = f"order-{uuid.uuid4().hex[:8]}"
    assert place.send_with_options(args=("A-1",), workflow_id=wid).wait(timeout=WAIT) == "A-1"

    with pytest.raises(EncoreError, match=re.escape(wid)):
        place.send_with_options(args=("B-2",), workflow_id=wid)
    assert app.get_invocation(wid).wait(timeout=WAIT) == "A-1"


def test_reusing_a_workflow_id_with_other_arguments_before_it_started_is_a_conflict(harness: Harness) -> None:
    app = harness.app

    @app.task
    def place(order_id: str) -> str:
        return f"placed {order_id}"

    harness.start()
    wid = f"order-{uuid.uuid4().hex[:8]}"
    # Given a start for wid that no worker has seen yet (delayed) ...
    outcomes: dict[str, Any] = {}
    handles = {"A-1": place.send_with_options(args=("A-1",), workflow_id=wid, delay=300)}
    # When another start reuses wid with other arguments at once
    try:
        handles["B-2"] = place.send_with_options(args=("B-2",), workflow_id=wid)
    except EncoreError as e:
        outcomes["B-2"] = e
    for key, handle in handles.items():
        try:
            outcomes[key] = handle.wait(timeout=WAIT)
        except EncoreError as e:
            outcomes[key] = e
    # Then one run wins and the other caller learns of the conflict, at send or at wait
    winners = {key: value for key, value in outcomes.items() if not isinstance(value, EncoreError)}
    assert len(winners) == 1, outcomes
    (key, value), = winners.items()
    assert value == f"placed {key}"


# -- 30 workflows at once --------------------------------------------------------------------


def test_30_order_workflows_at_once(harness: Harness) -> None:
    app = harness.app

    @app.task
    def charge(order_id: str, amount: int) -> dict[str, Any]:
        return {"payment_id": charge.wf.uuid(), "amount": amount}

    @app.task
    def ship(order_id: str) -> str:
        return f"TRK-{order_id}-{int(ship.wf.random() * 100000):05d}"

    @app.task
    def order(order_id: str, amount: int) -> dict[str, Any]:
        payment = order.wf.execute_task(charge, order_id, amount).result
        tracking = order.wf.execute_task(ship, order_id).result
        order.wf.set_data("tracking", tracking)
        return {"order_id": order_id, "payment": payment, "tracking": tracking}

    harness.start()
    handles = {f"A-{i}": order.send(f"A-{i}", i * 10) for i in range(30)}
    results = {key: inv.wait(timeout=WAIT * 2) for key, inv in handles.items()}

    for i, (key, result) in enumerate(results.items()):
        assert result["order_id"] == key and result["payment"]["amount"] == i * 10
        assert re.fullmatch(rf"TRK-{key}-\d{{5}}", result["tracking"])
        assert app.get_workflow_data(handles[key].invocation_id) == {"tracking": result["tracking"]}
    assert len({r["payment"]["payment_id"] for r in results.values()}) == 30
