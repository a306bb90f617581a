"""Logging on every backend pair: ``wf.logger`` logs each line once per real execution, and the
library's records name the workflow and invocation they are about (as ``extra`` fields a JSON
formatter emits). Run with ``ENCORE_FAST_PATH=0`` too: the first passes run speculatively only
with the fast path on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dramatiq_encore.actors.context import current_context
from dramatiq_encore.actors.messages import StartEnvelope
from dramatiq_encore.actors.replay import Snapshot, run_pass
from dramatiq_encore.identity import WorkflowIdentity
from dramatiq_encore.observe import logs
from dramatiq_encore.observe.hooks import PassEnded, WorkflowFinished, events
from dramatiq_encore.state.models import InvocationMeta, InvocationRecord, ParentRef
from tests.conftest import Harness
from tests.support.forge import forge

WAIT = 20.0
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """What a JSON log formatter does: the message and every ``extra`` field of the record."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: value for key, value in vars(record).items() if key not in _STANDARD}
        return json.dumps({"logger": record.name, "level": record.levelname, "message": record.getMessage(), **fields})


class Captured(logging.Handler):
    """Formats each record it gets with :class:`JsonFormatter`; keeps the records too."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self.format(record))
        with self._lock:
            self.lines.append(line)
            self.records.append(record)

    def where(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self._lock:
            return [line for line in self.lines if predicate(line)]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """A handler on the library's root logger, which every library logger propagates to."""
    handler = Captured()
    library = logging.getLogger("dramatiq_encore")
    level = library.level
    library.addHandler(handler)
    library.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        library.removeHandler(handler)
        library.setLevel(level)


class Passes:
    def __init__(self) -> None:
        self.events: list[PassEnded] = []

    def __call__(self, event: PassEnded) -> None:
        self.events.append(event)

    def of(self, invocation_id: str) -> int:
        return sum(1 for event in list(self.events) if event.invocation_id == invocation_id)


@pytest.fixture
def passes() -> Iterator[Passes]:
    counted = Passes()
    events.subscribe(PassEnded, counted)
    try:
        yield counted
    finally:
        events.unsubscribe(PassEnded, counted)


def _eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_a_five_step_workflow_logs_each_line_once_across_its_six_passes(
    harness: Harness, captured: Captured, passes: Passes
) -> None:
    app = harness.app

    @app.task
    def double(i: int) -> int:
        double.wf.logger.info("doubling %d", i)  # a leaf: its one pass may be speculative
        return i * 2

    @app.task
    def five(n: int) -> int:
        total = 0
        for i in range(n):
            total += five.wf.execute_task(double, i).result
            five.wf.logger.info("after step %d: %d", i + 1, total)
        return total

    harness.start()
    inv = five.send(5)
    assert inv.wait(timeout=WAIT) == 20
    root = inv.invocation_id
    assert _eventually(lambda: passes.of(root) == 6)
    lines = captured.where(lambda line: line["logger"] == "dramatiq_encore.workflow.five")
    assert [line["message"] for line in lines] == [f"after step {i}: {2 * sum(range(i))}" for i in range(1, 6)]
    assert all(line["workflow_id"] == root and line["invocation_id"] == root for line in lines)
    leaves = captured.where(lambda line: line["logger"] == "dramatiq_encore.workflow.double")
    assert sorted(line["message"] for line in leaves) == [f"doubling {i}" for i in range(5)]
    assert sorted(line["invocation_id"] for line in leaves) == [f"{root}/{n}" for n in range(1, 6)]
    assert all(line["workflow_id"] == root for line in leaves)
    assert passes.of(root) == 6  # and no more came meanwhile
    record = next(r for r in captured.records if r.name == "dramatiq_encore.workflow.five")
    assert record.pathname == __file__ and record.funcName == "five"  # the caller, not the adapter


def test_a_line_before_the_first_step_and_after_values_is_logged_once(harness: Harness, captured: Captured) -> None:
    app = harness.app

    @app.task
    def step(i: int) -> int:
        return i

    @app.task
    def flow() -> list[int]:
        flow.wf.logger.warning("starting")
        out = []
        for i in range(3):
            token = flow.wf.random()
            flow.wf.logger.debug("drew %.3f", token)
            out.append(flow.wf.execute_task(step, i).result)
        flow.wf.logger.error("done %s", out)
        return out

    harness.start()
    inv = flow.send()
    assert inv.wait(timeout=WAIT) == [0, 1, 2]
    lines = captured.where(lambda line: line["logger"] == "dramatiq_encore.workflow.flow")
    messages = [line["message"] for line in lines]
    assert messages[0] == "starting" and messages[-1] == "done [0, 1, 2]"
    assert len(messages) == 5 and sum(m.startswith("drew ") for m in messages) == 3
    assert [line["level"] for line in lines] == ["WARNING", "DEBUG", "DEBUG", "DEBUG", "ERROR"]


def test_the_librarys_records_carry_the_workflow_and_invocation(
    harness: Harness, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = harness.app

    class Unreachable(Exception):
        pass

    real_deliver = app.state.deliver
    failures = [1]

    def flaky_deliver(*args: Any, **kwargs: Any) -> Any:
        if failures:  # the first delivery finds the store unreachable: a warning, a re-send
            failures.pop()
            raise Unreachable("down")
        return real_deliver(*args, **kwargs)

    monkeypatch.setattr(app.state, "transient_errors", (Unreachable,))
    monkeypatch.setattr(app.state, "deliver", flaky_deliver)

    def broken(event: WorkflowFinished) -> None:
        raise RuntimeError("observer down")

    @app.task
    def leaf(x: int) -> int:
        return x + 1

    @app.task
    def flow(x: int) -> int:
        return flow.wf.execute_task(leaf, x).result

    events.subscribe(WorkflowFinished, broken)
    try:
        harness.start()
        inv = flow.send_with_options(args=(1,), workflow_id="logged-wf")
        assert inv.wait(timeout=WAIT) == 2
        # Both finished (the leaf, then its parent): each commit's records come right after it.
        assert _eventually(lambda: len(captured.where(lambda line: line["message"].endswith(") succeeded"))) == 2)
    finally:
        events.unsubscribe(WorkflowFinished, broken)
    root = inv.invocation_id

    (warning,) = captured.where(lambda line: line["level"] == "WARNING" and "unavailable" in line["message"])
    assert warning["logger"] == "dramatiq_encore.actors.runtime"
    assert (warning["workflow_id"], warning["invocation_id"]) == (root, root)
    failed = captured.where(lambda line: "an observer of WorkflowFinished failed" in line["message"])
    assert {(line["logger"], line["workflow_id"], line["invocation_id"]) for line in failed} == {
        ("dramatiq_encore.observe.hooks", root, root),
        ("dramatiq_encore.observe.hooks", root, f"{root}/1"),
    }
    finished = captured.where(
        lambda line: line["logger"] == "dramatiq_encore.actors.runtime" and "succeeded" in line["message"]
    )
    assert {(line["workflow_id"], line["invocation_id"]) for line in finished} == {(root, root), (root, f"{root}/1")}
    assert all("workflow_id" in line and "invocation_id" in line for line in captured.where(lambda line: True))


def test_a_dead_letter_at_the_door_names_the_invocation(harness: Harness, captured: Captured) -> None:
    app = harness.app

    @app.task
    def leaf(x: int) -> int:
        return x + 1

    @app.task
    def flow(x: int) -> int:
        return flow.wf.execute_task(leaf, x).result

    harness.start()
    # A start for a child whose parent the store does not know: dead-lettered, at the door.
    identity = WorkflowIdentity.root("ghost", "flow")
    parent = ParentRef(invocation_id="ghost", task="flow", queue=app.default_queue, step=1)
    envelope = StartEnvelope(invocation_id="ghost/1", identity=identity, parent=parent)
    forge(harness, "leaf", envelope.model_dump(mode="json"), args=[1])
    assert _eventually(lambda: bool(captured.where(lambda line: "dead-lettering" in line["message"])))
    (dead,) = captured.where(lambda line: "dead-lettering" in line["message"])
    assert dead["logger"] == "dramatiq_encore.actors.mailbox" and dead["level"] == "ERROR"
    assert (dead["workflow_id"], dead["invocation_id"]) == ("ghost", "ghost/1")
    assert all("workflow_id" in line and "invocation_id" in line for line in captured.where(lambda line: True))


def test_outside_a_message_the_ids_are_none_and_a_handler_filter_adds_them_to_any_record() -> None:
    record = logging.getLogger("dramatiq_encore.app").makeRecord(
        "dramatiq_encore.app", logging.INFO, __file__, 1, "x", (), None
    )
    assert record.workflow_id is None and record.invocation_id is None  # type: ignore[attr-defined]
    other = logging.getLogger("someone.else").makeRecord("someone.else", logging.INFO, __file__, 1, "x", (), None)
    assert not hasattr(other, "workflow_id")
    token = logs.enter()
    try:
        logs.identify("wf-9/2", "wf-9")
        logs.ContextFilter().filter(other)
        assert (other.workflow_id, other.invocation_id) == ("wf-9", "wf-9/2")  # type: ignore[attr-defined]
        mine = logging.getLogger("dramatiq_encore.state").makeRecord(
            "dramatiq_encore.state", logging.INFO, __file__, 1, "x", (), None
        )
        assert (mine.workflow_id, mine.invocation_id) == ("wf-9", "wf-9/2")  # type: ignore[attr-defined]
    finally:
        logs.leave(token)
    assert logs.current() == (None, None)
    with logs.about("wf-7/1"):  # a thread of its own working for an invocation
        renewal = logging.getLogger("dramatiq_encore.actors.leases").makeRecord(
            "dramatiq_encore.actors.leases", logging.WARNING, __file__, 1, "x", (), None
        )
    assert (renewal.workflow_id, renewal.invocation_id) == (None, "wf-7/1")  # type: ignore[attr-defined]


def _record() -> InvocationRecord:
    identity = WorkflowIdentity.root("spec-wf", "flow")
    return InvocationRecord(invocation_id="spec-wf", task="flow", queue="q", identity=identity, digest="d", seed="0f")


def _clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_speculative_pass_holds_its_lines_until_it_counts(captured: Captured) -> None:
    def body() -> str:
        current_context().logger.info("before any wf operation")  # not a wf operation: no lease asked
        return "ok"

    for holds in (False, True):
        with logs.speculating() as speculation:
            snapshot = Snapshot(InvocationMeta(record=_record(), status="running"))
            outcome = run_pass(snapshot, body, [], {}, clock=_clock, origin="start", speculative=True)
            assert outcome.status == "succeeded"
            assert captured.where(lambda line: line["logger"] == "dramatiq_encore.workflow.flow") == []
            if holds:
                speculation.release()
    lines = captured.where(lambda line: line["logger"] == "dramatiq_encore.workflow.flow")
    assert [line["message"] for line in lines] == ["before any wf operation"]  # the abandoned one's is gone
