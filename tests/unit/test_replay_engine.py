"""The pure replay engine (DESIGN section 2), driven with no broker and no state store.

A test builds a :class:`Snapshot` from an invocation record and JSON journal entries, runs
one pass with :func:`run_pass` and inspects the :class:`PassOutcome`. ``drive`` plays the
runtime's part (append the pass's entries, resolve the new step, run again) so a whole
workflow runs in microseconds. Golden histories under ``histories/`` are replayed the way
Temporal's ``Replayer`` does: a recorded journal must replay to the recorded result with
today's code, or fail with ``NonDeterminismError`` when the code no longer matches it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from dramatiq_encore import EncoreError, NonDeterminismError, TaskError
from dramatiq_encore.actors.codec import ResultError, TaskCodec, digest
from dramatiq_encore.actors.context import Suspend, current_context
from dramatiq_encore.actors.pass_state import Needs
from dramatiq_encore.actors.replay import Pass, PassOutcome, Snapshot, run_pass
from dramatiq_encore.identity import WorkflowIdentity
from dramatiq_encore.state.models import (
    ErrorInfo,
    InvocationMeta,
    InvocationRecord,
    Outcome,
    ResolvedEntry,
    StepEntry,
    ValueEntry,
)

HISTORIES = Path(__file__).parent / "histories"
UTC = dt.UTC
BASE_TIME = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# -- building blocks ---------------------------------------------------------------------


@dataclasses.dataclass
class FakeStep:
    """A step target: what the engine needs from a task, without a broker behind it."""

    name: str
    fn: Callable[..., Any]
    queue_name: str = "default"
    force_new_workflow: bool = False
    codec: TaskCodec = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.codec = TaskCodec(self.fn, self.name)


def _charge(order_id: str, amount: float) -> dict[str, Any]:
    raise AssertionError("a step target's body never runs inside the engine")


def _reserve(order_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    raise AssertionError("a step target's body never runs inside the engine")


def _notify(order_id: str) -> str:
    raise AssertionError("a step target's body never runs inside the engine")


CHARGE = FakeStep("charge_payment", _charge)
RESERVE = FakeStep("reserve_inventory", _reserve)
NOTIFY = FakeStep("notify", _notify)
SPAWN = FakeStep("spawn_child_workflow", _notify, force_new_workflow=True)


class Clock:
    """A clock that advances ``step`` per call, or stands still with ``step=0``."""

    def __init__(self, start: dt.datetime = BASE_TIME, step: dt.timedelta = dt.timedelta(seconds=1)) -> None:
        self.now = start
        self.step = step
        self.calls = 0

    def __call__(self) -> dt.datetime:
        self.calls += 1
        value = self.now
        self.now += self.step
        return value


def forbidden_clock() -> dt.datetime:
    raise AssertionError("a replay must not read the clock")


class Store(dict[str, str]):
    """The workflow data a pass is handed: every key is answered (missing ones as not set)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str | None:  # type: ignore[override]
        return self.get(key)


def record(invocation_id: str = "wf-1", seed: str = "0f" * 16, *, task: str = "order_workflow") -> InvocationRecord:
    return InvocationRecord(
        invocation_id=invocation_id,
        task=task,
        queue="default",
        identity=WorkflowIdentity.root(invocation_id, task),
        digest="not-checked-by-the-engine",
        seed=seed,
    )


def snapshot(rec: InvocationRecord | None = None, journal: Sequence[str] = ()) -> Snapshot:
    snap = Snapshot(InvocationMeta(record=rec or record(), status="running"))
    snap.apply(list(journal))
    return snap


def run(
    fn: Callable[..., Any],
    *args: Any,
    journal: Sequence[str] = (),
    rec: InvocationRecord | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    data: dict[str, str] | None = None,
    origin: str = "start",
) -> PassOutcome:
    """One pass of ``fn`` over ``journal``; ``data`` is the workflow data store (JSON text)."""
    store = Store(data if data is not None else {})
    return run_pass(snapshot(rec, journal), fn, list(args), {}, clock=clock or Clock(), origin=origin, data=store)


def ok(step: StepEntry, value: Any) -> str:
    return ResolvedEntry(n=step.n, o=Outcome(ok=True, value=value, invocation_id=step.child)).model_dump_json()


def failed(step: StepEntry, error_type: str = "ValueError", message: str = "card declined") -> str:
    error = ErrorInfo(type=error_type, message=message, traceback="Traceback: ...")
    return ResolvedEntry(n=step.n, o=Outcome(ok=False, error=error, invocation_id=step.child)).model_dump_json()


def dumped(outcome: PassOutcome) -> list[str]:
    return [entry.model_dump_json() for entry in outcome.entries]


@dataclasses.dataclass
class Run:
    outcome: PassOutcome
    journal: list[str]
    data: dict[str, str]
    passes: int


def drive(
    fn: Callable[..., Any],
    *args: Any,
    children: Callable[[StepEntry], str] | None = None,
    rec: InvocationRecord | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    max_passes: int = 20,
) -> Run:
    """Play the runtime: commit each pass's entries and data, resolve its step, run again."""
    resolve = children or (lambda step: ok(step, f"result of {step.task}"))
    journal: list[str] = []
    data: dict[str, str] = {}
    origin = "start"
    clock = clock or Clock()
    for passes in range(1, max_passes + 1):
        outcome = run(fn, *args, journal=journal, rec=rec, clock=clock, data=data, origin=origin)
        journal += dumped(outcome)
        data.update(outcome.data_writes)
        if outcome.finished:
            return Run(outcome, journal, data, passes)
        for step in outcome.new_steps:
            journal.append(resolve(step))
            origin = f"res:{step.n}"
    raise AssertionError(f"the workflow did not finish within {max_passes} passes")


def values(journal: list[str], kind: str) -> list[Any]:
    return [e["v"] for e in map(json.loads, journal) if e["e"] == "v" and e["k"] == kind]


# -- the order workflow of the golden histories --------------------------------------------


def order_workflow(order_id: str, amount: float) -> dict[str, Any]:
    wf = current_context()
    tracking = f"TRK-{order_id}-{int(wf.random() * 100000):05d}"
    wf.set_data("tracking_number", tracking)
    started = wf.utc_now()
    payment = wf.execute_task(CHARGE, order_id, amount)
    reservation = wf.execute_task(RESERVE, order_id, [{"sku": "A-7", "qty": 2}])
    wf.set_data("status", "paid")
    label_id = wf.uuid()
    sequence = wf.side_effect("sequence", lambda: 4242)
    status = wf.get_data("status")
    finished = wf.utc_now()
    return {
        "order_id": order_id,
        "tracking_number": tracking,
        "payment": payment.result,
        "reservation": reservation.result,
        "label_id": label_id,
        "sequence": sequence,
        "status": status,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
    }


def load_history(name: str) -> tuple[InvocationRecord, list[str], dict[str, Any]]:
    history = json.loads((HISTORIES / name).read_text())
    journal = [json.dumps(entry) for entry in history["journal"]]
    return InvocationRecord.model_validate(history["record"]), journal, history


# -- Snapshot ------------------------------------------------------------------------------


def test_snapshot_folds_values_steps_and_first_resolution() -> None:
    # Given a journal with two values, two steps and step 1 resolved twice (a duplicate)
    step1 = StepEntry(n=1, task="a", queue="q", digest="d1", child="wf-1/1", identity=record().identity)
    step2 = StepEntry(n=2, task="b", queue="q", digest="d2", child="wf-1/2", identity=record().identity)
    journal = [
        ValueEntry(k="uuid", v="u-1").model_dump_json(),
        step1.model_dump_json(),
        ok(step1, "first"),
        ok(step1, "second"),
        ValueEntry(k="uuid", v="u-2").model_dump_json(),
        step2.model_dump_json(),
    ]
    # When it is folded, in two increments as the runtime's cache does
    snap = snapshot(journal=journal[:3])
    snap.apply(journal[3:])
    # Then the first resolution wins and only step 2 is pending
    assert snap.length == 6
    assert [v.v for v in snap.values["uuid"]] == ["u-1", "u-2"]
    assert snap.results[1].value == "first"
    assert [s.n for s in snap.pending_steps()] == [2]


# -- 2.1 replay returns recorded values ------------------------------------------------------


def everything() -> dict[str, Any]:
    wf = current_context()
    first = {
        "random": wf.random(),
        "uuid": wf.uuid(),
        "now": wf.utc_now().isoformat(),
        "side_effect": wf.side_effect("dice", lambda: 4),
        "data": wf.get_data("k", "missing"),
    }
    step = wf.execute_task(NOTIFY, "A-1")
    return {**first, "step": step.result}


def test_first_pass_records_each_value_then_suspends_at_step_1() -> None:
    outcome = run(everything, data={"k": json.dumps("old")})

    assert outcome.status == "suspended"
    assert outcome.waiting == [1]
    kinds = [(e.k, e.name) for e in outcome.entries if isinstance(e, ValueEntry)]
    assert kinds == [("random", None), ("uuid", None), ("utc_now", None), ("op:dice", "dice"), ("get_data", "k")]
    (step,) = outcome.new_steps
    assert (step.n, step.task, step.child, step.origin) == (1, "notify", "wf-1/1", "start")
    assert step.args == ["A-1"] and step.digest == digest(["A-1"], {})
    assert step.identity == record().identity  # a plain child joins the caller's workflow
    assert outcome.entries[-1] == step


def test_replay_returns_every_recorded_value_without_clock_or_store() -> None:
    # Given the first pass ran with k == "old" and step 1 then resolved
    first = run(everything, data={"k": json.dumps("old")})
    journal = [*dumped(first), ok(first.new_steps[0], "sent")]
    # When the workflow replays while the store now says k == "new" (another invocation wrote it)
    outcome = run_pass(snapshot(journal=journal), everything, [], {}, clock=forbidden_clock, origin="res:1")
    # Then every value is the recorded one, and nothing new is recorded
    assert outcome.status == "succeeded", outcome.error
    recorded = {e.k: e.v for e in first.entries if isinstance(e, ValueEntry)}
    assert outcome.value == {
        "random": recorded["random"],
        "uuid": recorded["uuid"],
        "now": recorded["utc_now"],
        "side_effect": 4,
        "data": "old",
        "step": "sent",
    }
    assert outcome.entries == [] and outcome.new_steps == []
    assert outcome.data_writes == {}


def test_get_data_replays_the_value_read_even_after_the_key_changed() -> None:
    def reader() -> list[Any]:
        wf = current_context()
        before = wf.get_data("k")
        wf.execute_task(NOTIFY, "A-1")  # meanwhile a child rewrites k
        return [before, wf.get_data("k")]

    store = {"k": json.dumps("old")}
    first = run(reader, data=store)
    journal = [*dumped(first), ok(first.new_steps[0], None)]
    store["k"] = json.dumps("new")

    outcome = run(reader, journal=journal, data=store)

    assert outcome.value == ["old", "new"]


def test_get_data_sees_this_pass_own_set_data_and_default_for_missing_key() -> None:
    def fn() -> list[Any]:
        wf = current_context()
        missing = wf.get_data("k", "dflt")
        wf.set_data("k", {"n": 1})
        return [missing, wf.get_data("k")]

    outcome = run(fn, data={})

    assert outcome.value == ["dflt", {"n": 1}]
    assert outcome.data_writes == {"k": json.dumps({"n": 1})}


def test_side_effect_runs_its_function_once() -> None:
    calls: list[int] = []

    def count() -> int:
        calls.append(1)
        return len(calls)

    def fn() -> int:
        wf = current_context()
        value = wf.side_effect("counter", count)
        wf.execute_task(NOTIFY, "x")
        return value + wf.deterministic._deterministic_operation("other", lambda: 10)

    result = drive(fn)

    assert result.outcome.value == 11
    assert calls == [1]
    assert result.passes == 2


def test_side_effect_that_returns_non_json_fails_clearly() -> None:
    outcome = run(lambda: current_context().side_effect("thing", object))

    assert outcome.status == "failed" and not outcome.retryable
    assert outcome.error is not None and outcome.error.type == "ResultSerializationError"
    assert "side effect 'thing'" in outcome.error.message
    assert isinstance(outcome.exception, ResultError)


def test_step_result_replays_on_every_pass() -> None:
    seen: list[Any] = []

    def fn() -> list[Any]:
        wf = current_context()
        first = wf.execute_task(CHARGE, "A-1", 10.0)
        seen.append(first.result)
        second = wf.execute_task(NOTIFY, "A-1")
        return [first.result, second.result, first.invocation_id, first.workflow.workflow_id]

    result = drive(fn, children=lambda step: ok(step, {"step": step.n}))

    assert result.outcome.value == [{"step": 1}, {"step": 2}, "wf-1/1", "wf-1"]
    assert seen == [{"step": 1}, {"step": 1}]


# -- 2.2 one stream per kind, per invocation -------------------------------------------------


def test_adding_a_random_call_does_not_shift_uuids() -> None:
    def plain() -> list[str]:
        wf = current_context()
        return [wf.uuid(), wf.uuid(), wf.uuid()]

    def with_random() -> list[str]:
        wf = current_context()
        wf.random()
        first = wf.uuid()
        wf.random()
        wf.side_effect("x", lambda: 1)
        return [first, wf.uuid(), wf.uuid()]

    assert run(plain).value == run(with_random).value


def test_adding_a_uuid_call_does_not_shift_randoms_and_side_effects_are_named_streams() -> None:
    def plain() -> list[Any]:
        wf = current_context()
        return [wf.random(), wf.random(), wf.side_effect("a", lambda: "a1")]

    def with_uuid() -> list[Any]:
        wf = current_context()
        wf.uuid()
        r1 = wf.random()
        wf.side_effect("b", lambda: "b1")
        return [r1, wf.random(), wf.side_effect("a", lambda: "a1")]

    assert run(plain).value == run(with_uuid).value


def test_streams_are_seeded_per_invocation() -> None:
    def fn() -> list[Any]:
        wf = current_context()
        return [wf.uuid(), wf.random()]

    parent = run(fn, rec=record("wf-1", seed="01" * 16)).value
    child = run(fn, rec=record("wf-1/1", seed="02" * 16)).value
    again = run(fn, rec=record("wf-1", seed="01" * 16)).value

    assert parent[0] != child[0] and parent[1] != child[1]
    assert parent == again


def test_uuids_are_version_4_and_randoms_in_unit_interval() -> None:
    def fn() -> list[Any]:
        wf = current_context()
        return [(wf.uuid(), wf.random()) for _ in range(200)]

    pairs = run(fn).value

    ids = [uuid.UUID(u) for u, _ in pairs]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in ids)
    assert [str(u) for u in ids] == [u for u, _ in pairs]
    assert len(set(ids)) == 200
    assert all(0.0 <= r < 1.0 for _, r in pairs)
    assert len({r for _, r in pairs}) == 200


# -- 2.3 utc_now ---------------------------------------------------------------------------


def test_utc_now_is_the_clock_tz_aware_and_strictly_increasing_when_the_clock_stands_still() -> None:
    frozen = Clock(step=dt.timedelta(0))

    def fn() -> list[dt.datetime]:
        wf = current_context()
        return [wf.utc_now() for _ in range(1000)]

    times = run(fn, clock=frozen).value

    assert times[0] == BASE_TIME and times[0].utcoffset() == dt.timedelta(0)
    assert all(a < b for a, b in itertools.pairwise(times))
    assert times[-1] - times[0] < dt.timedelta(seconds=1)


def test_utc_now_shows_elapsed_time_and_never_goes_back_across_passes() -> None:
    # Given a clock that jumps 1 h forward, then (another worker, skewed) 2 h back
    readings = iter([BASE_TIME, BASE_TIME + dt.timedelta(hours=1), BASE_TIME - dt.timedelta(hours=1)])

    def fn() -> list[dt.datetime]:
        wf = current_context()
        a = wf.utc_now()
        wf.execute_task(NOTIFY, "1")
        b = wf.utc_now()
        wf.execute_task(NOTIFY, "2")
        return [a, b, wf.utc_now()]

    result = drive(fn, clock=lambda: next(readings))

    a, b, c = result.outcome.value
    assert b - a == dt.timedelta(hours=1)  # real elapsed time, not base + 1 s per call
    assert b < c <= b + dt.timedelta(milliseconds=1)


# -- 2.4 positional steps and non-determinism ----------------------------------------------


def test_two_identical_calls_are_two_steps() -> None:
    def fn() -> list[str]:
        wf = current_context()
        return [wf.execute_task(NOTIFY, "same").invocation_id, wf.execute_task(NOTIFY, "same").invocation_id]

    result = drive(fn)

    steps = [e for e in map(json.loads, result.journal) if e["e"] == "step"]
    assert [(s["n"], s["task"], s["child"]) for s in steps] == [(1, "notify", "wf-1/1"), (2, "notify", "wf-1/2")]
    assert steps[0]["digest"] == steps[1]["digest"]
    assert result.outcome.value == ["wf-1/1", "wf-1/2"]
    assert result.passes == 3


def test_force_new_workflow_step_gets_a_child_identity() -> None:
    outcome = run(lambda: current_context().execute_task(SPAWN, "x"))

    (step,) = outcome.new_steps
    assert step.identity == WorkflowIdentity(
        workflow_id="wf-1/1", parent_workflow_id="wf-1", root_workflow_id="wf-1", workflow_type="spawn_child_workflow"
    )


def test_unresolved_step_is_not_created_again_by_a_second_pass() -> None:
    # Given step 1 recorded but not resolved (a duplicate or concurrent resume reaches it)
    first = run(order_workflow, "A-1", 10.0)
    # When another pass runs over that journal
    again = run(order_workflow, "A-1", 10.0, journal=dumped(first), clock=forbidden_clock, origin="start")
    # Then it waits on the same step and records nothing new
    assert again.status == "suspended" and again.waiting == [1]
    assert again.entries == [] and again.new_steps == []
    assert again.data_writes == {}


def _step_1_journal(task: FakeStep, *args: Any) -> list[str]:
    first = run(lambda: current_context().execute_task(task, *args))
    return [*dumped(first), ok(first.new_steps[0], "done")]


@pytest.mark.parametrize(
    ("asked", "args", "requested"),
    [
        pytest.param(RESERVE, ("A-1", []), "reserve_inventory", id="other-task"),
        pytest.param(CHARGE, ("A-1", 99.0), "charge_payment", id="other-arguments"),
    ],
)
def test_step_asking_for_something_else_than_recorded_fails_with_nondeterminism(
    asked: FakeStep, args: tuple[Any, ...], requested: str
) -> None:
    journal = _step_1_journal(CHARGE, "A-1", 10.0)

    outcome = run(lambda: current_context().execute_task(asked, *args), journal=journal, origin="res:1")

    assert outcome.status == "failed" and not outcome.retryable
    exc = outcome.exception
    assert isinstance(exc, NonDeterminismError)
    assert (exc.workflow_id, exc.invocation_id, exc.step) == ("wf-1", "wf-1", "step 1")
    assert exc.recorded == f"charge_payment(args digest {digest(['A-1', 10.0], {})})"
    assert exc.requested == f"{requested}(args digest {digest(list(args), {})})"
    assert outcome.error is not None and outcome.error.type == "NonDeterminismError"
    for text in ("'wf-1'", "step 1", exc.recorded, exc.requested, "deterministic"):
        assert text in outcome.error.message
    assert outcome.entries == []


def test_nondeterminism_fails_the_pass_even_when_user_code_catches_it() -> None:
    journal = _step_1_journal(CHARGE, "A-1", 10.0)
    after: list[str] = []

    def stubborn() -> str:
        wf = current_context()
        with contextlib.suppress(Exception):
            wf.execute_task(RESERVE, "A-1", [])
        with pytest.raises(NonDeterminismError):  # every later wf.* call fails the same way
            after.append(wf.uuid())
        try:
            wf.execute_task(NOTIFY, "A-1")
        except NonDeterminismError:
            return "carried on"
        return "unreachable"

    outcome = run(stubborn, journal=journal)

    assert outcome.status == "failed" and not outcome.retryable
    assert outcome.error is not None and outcome.error.type == "NonDeterminismError"
    assert after == [] and outcome.entries == [] and outcome.new_steps == []


def test_data_key_read_in_another_order_is_nondeterminism() -> None:
    def reads(first: str, second: str) -> Callable[[], Any]:
        def fn() -> Any:
            wf = current_context()
            wf.get_data(first)
            wf.execute_task(NOTIFY, "x")
            return wf.get_data(second)

        return fn

    first = run(reads("a", "b"))
    journal = [*dumped(first), ok(first.new_steps[0], None)]

    outcome = run(reads("b", "a"), journal=journal)

    assert isinstance(outcome.exception, NonDeterminismError)
    assert outcome.exception.step == "get_data #1"
    assert (outcome.exception.recorded, outcome.exception.requested) == ("'a'", "'b'")


def test_step_arguments_that_do_not_fit_the_task_fail_before_recording_a_step() -> None:
    caught: list[str] = []

    def fn() -> Any:
        wf = current_context()
        try:
            wf.execute_task(CHARGE, "A-1")  # amount missing
        except EncoreError as e:
            caught.append(f"{type(e).__name__}: {e}")
        return wf.execute_task(CHARGE, "A-1", amount=5.0)

    outcome = run(fn)

    (error,) = caught
    assert error.startswith("ArgumentError: ") and "charge_payment" in error and "amount" in error
    assert outcome.status == "suspended"
    (step,) = outcome.new_steps
    assert (step.task, step.args, step.kwargs) == ("charge_payment", ["A-1"], {"amount": 5.0})


# -- 2.5 set_data applied once ---------------------------------------------------------------


def test_set_data_is_written_by_the_first_pass_only() -> None:
    def fn() -> str:
        wf = current_context()
        wf.set_data("k", 1)
        wf.execute_task(NOTIFY, "x")
        return "done"

    first = run(fn)
    assert first.data_writes == {"k": "1"}
    # Given another invocation set k = 2 meanwhile
    store = {"k": "2"}
    journal = [*dumped(first), ok(first.new_steps[0], None)]

    replay = run(fn, journal=journal, data=store)

    assert replay.status == "succeeded"
    assert replay.data_writes == {}  # the runtime has nothing to write back: k stays 2


def test_set_data_of_a_value_that_is_not_json_fails_clearly() -> None:
    outcome = run(lambda: current_context().set_data("when", object()))

    assert outcome.error is not None and outcome.error.type == "ResultSerializationError"
    assert "workflow data 'when'" in outcome.error.message


# -- 2.6 suspension is a BaseException ---------------------------------------------------------


def test_suspension_is_a_base_exception_that_except_exception_does_not_catch() -> None:
    assert issubclass(Suspend, BaseException) and not issubclass(Suspend, Exception)

    def seed_style() -> str:
        wf = current_context()
        try:
            wf.execute_task(CHARGE, "A-1", 10.0)
        except Exception:
            return "swallowed"
        return "charged"

    outcome = run(seed_style)

    assert outcome.status == "suspended" and outcome.waiting == [1]
    assert drive(seed_style).outcome.value == "charged"


def test_swallowing_the_suspension_is_a_misuse_error() -> None:
    recorded_after: list[Any] = []

    def swallows() -> str:
        wf = current_context()
        with contextlib.suppress(BaseException):
            wf.execute_task(CHARGE, "A-1", 10.0)
        with contextlib.suppress(BaseException):  # later wf.* calls keep suspending, recording nothing
            recorded_after.append(wf.uuid())
        return "looks fine"

    outcome = run(swallows)

    assert outcome.status == "failed" and not outcome.retryable
    assert outcome.error is not None and outcome.error.type == "MisuseError"
    assert "'wf-1'" in outcome.error.message and "BaseException" in outcome.error.message
    assert recorded_after == []
    assert [e.n for e in outcome.new_steps] == [1]
    assert not any(isinstance(e, ValueEntry) and e.k == "uuid" for e in outcome.entries)


def test_swallowing_the_suspension_then_raising_is_still_a_misuse_error() -> None:
    def swallows_then_raises() -> None:
        try:
            current_context().execute_task(CHARGE, "A-1", 10.0)
        except BaseException:
            raise ValueError("something else") from None

    outcome = run(swallows_then_raises)

    assert outcome.error is not None and outcome.error.type == "MisuseError" and not outcome.retryable


# -- 2.7 failed child ------------------------------------------------------------------------


def test_failed_step_raises_the_same_task_error_on_every_replay() -> None:
    seen: list[tuple[str, str, str]] = []

    def fn() -> str:
        wf = current_context()
        try:
            wf.execute_task(CHARGE, "A-1", 10.0)
        except TaskError as e:
            seen.append((e.error_type, e.message, e.invocation_id))
            wf.execute_task(NOTIFY, "A-1")
            return f"compensated: {e}"
        return "charged"

    result = drive(fn, children=lambda s: failed(s) if s.task == "charge_payment" else ok(s, None))

    assert result.outcome.value == "compensated: ValueError: card declined"
    assert seen == [("ValueError", "card declined", "wf-1/1")] * 2


def test_uncaught_task_error_fails_without_retry_and_other_errors_are_retryable() -> None:
    journal = [*dumped(first := run(lambda: current_context().execute_task(CHARGE, "A-1", 1.0)))]
    journal.append(failed(first.new_steps[0]))

    uncaught = run(lambda: current_context().execute_task(CHARGE, "A-1", 1.0), journal=journal)
    user_bug = run(lambda: 1 / 0)

    assert uncaught.status == "failed" and not uncaught.retryable
    assert uncaught.error == ErrorInfo(type="ValueError", message="card declined", traceback="Traceback: ...")
    assert user_bug.status == "failed" and user_bug.retryable
    assert user_bug.error is not None and user_bug.error.type == "ZeroDivisionError"
    assert "ZeroDivisionError" in user_bug.error.traceback


# -- outside a pass --------------------------------------------------------------------------


def test_context_outside_a_pass_raises_a_clear_error() -> None:
    with pytest.raises(EncoreError, match="no workflow is running in this thread"):
        current_context()
    run(lambda: current_context().uuid())
    with pytest.raises(EncoreError):  # the pass does not leak its context
        current_context()


# -- golden histories ------------------------------------------------------------------------


def test_golden_order_history_replays_to_its_recorded_result() -> None:
    rec, journal, history = load_history("order_workflow.json")
    outcome = run_pass(
        snapshot(rec, journal), order_workflow, history["args"], {}, clock=forbidden_clock, origin="res:2"
    )

    assert outcome.status == "succeeded", outcome.error
    assert outcome.value == history["result"]
    assert outcome.entries == [] and outcome.new_steps == []
    assert outcome.data_writes == {}


def test_golden_order_history_prefix_resumes_where_it_stopped() -> None:
    # Given the history cut just after step 2 was recorded, before its result arrived
    rec, journal, history = load_history("order_workflow.json")
    entries = [json.loads(text) for text in journal]
    cut = next(i for i, e in enumerate(entries) if e["e"] == "step" and e["n"] == 2) + 1
    # When it replays, it waits on step 2 and records nothing
    waiting = run(order_workflow, *history["args"], journal=journal[:cut], rec=rec, clock=forbidden_clock)
    assert waiting.status == "suspended" and waiting.waiting == [2]
    assert waiting.entries == [] and waiting.new_steps == []
    # Then, once step 2's result is in, the next pass records the same kinds of entries as the
    # golden tail and returns the recorded result (the clock gives back the recorded time)
    finished_at = dt.datetime.fromisoformat(history["result"]["finished_at"])
    resumed = run(
        order_workflow,
        *history["args"],
        journal=journal[: cut + 1],
        rec=rec,
        clock=Clock(finished_at, dt.timedelta(0)),
        data={},
        origin="res:2",
    )
    tail = [(e["e"], e.get("k"), e.get("name")) for e in entries[cut + 1 :]]
    assert [(e.e, e.k, e.name) for e in resumed.entries if isinstance(e, ValueEntry)] == tail
    assert resumed.value == history["result"] | {"label_id": resumed.value["label_id"]}
    assert resumed.data_writes == {"status": json.dumps("paid")}


def test_golden_order_history_records_valid_values() -> None:
    _, journal, history = load_history("order_workflow.json")

    (label,) = values(journal, "uuid")
    started, finished = map(dt.datetime.fromisoformat, values(journal, "utc_now"))
    assert uuid.UUID(label).version == 4 and history["result"]["label_id"] == label
    assert finished - started > dt.timedelta(seconds=1)  # real elapsed time across two steps
    assert history["result"]["tracking_number"].startswith("TRK-A-1-")


@pytest.mark.parametrize(
    ("history_file", "step"),
    [
        pytest.param("order_workflow_reordered.json", "step 1", id="task-changed"),
        pytest.param("order_workflow_amount_changed.json", "step 1", id="arguments-changed"),
    ],
)
def test_history_recorded_by_other_code_fails_with_nondeterminism(history_file: str, step: str) -> None:
    rec, journal, history = load_history(history_file)
    outcome = run_pass(
        snapshot(rec, journal), order_workflow, history["args"], {}, clock=forbidden_clock, origin="res:1"
    )

    assert outcome.status == "failed" and not outcome.retryable
    exc = outcome.exception
    assert isinstance(exc, NonDeterminismError)
    assert exc.workflow_id == rec.identity.workflow_id and exc.step == step
    assert exc.recorded.startswith(history["recorded_task"]) and exc.requested.startswith("charge_payment(")
    assert outcome.entries == [] and outcome.data_writes == {}


# -- a pass that asks its driver: the lease (speculative) and data values --------------------


def _asking(fn: Callable[..., Any], *, speculative: bool = False, clock: Clock | None = None) -> Pass:
    return Pass(snapshot(), fn, [], {}, clock=clock or Clock(), origin="start", speculative=speculative)


def _leaf_then_values(seen: list[str]) -> Callable[[], Any]:
    def fn() -> Any:
        seen.append("body")  # plain code before the first wf operation
        wf = current_context()
        value = wf.utc_now()
        seen.append("after")
        return [value.isoformat(), wf.uuid()]

    return fn


def test_a_speculative_pass_asks_for_the_lease_before_anything_is_drawn() -> None:
    seen: list[str] = []
    clock = Clock()
    step = _asking(_leaf_then_values(seen), speculative=True, clock=clock)
    # When it reaches its first wf operation, it parks and asks; nothing was drawn yet
    asked = step.start()
    assert asked == Needs(lease=True) and step.parked
    assert seen == ["body"] and clock.calls == 0
    # Then, given the lease, it goes on from there: the body does not run twice
    outcome = step.answer(True)
    assert isinstance(outcome, PassOutcome) and outcome.status == "succeeded"
    assert seen == ["body", "after"] and clock.calls == 1 and len(outcome.entries) == 2


def test_an_abandoned_pass_records_nothing_even_if_it_swallows_the_abandon() -> None:
    def stubborn() -> str:
        wf = current_context()
        with contextlib.suppress(BaseException):
            wf.random()
        with contextlib.suppress(BaseException):
            wf.uuid()  # nothing more is recorded after the abandon
        return "kept going"

    step = _asking(stubborn, speculative=True)
    assert step.start() == Needs(lease=True)
    step.abandon()
    assert not step.parked


def test_a_leaf_never_asks() -> None:
    step = _asking(lambda x=3: x * 2, speculative=True)
    outcome = step.start()
    assert isinstance(outcome, PassOutcome) and outcome.status == "succeeded" and outcome.value == 6
    assert outcome.entries == []


def test_a_pass_asks_for_a_data_value_once_and_records_it() -> None:
    effects: list[int] = []

    def fn() -> Any:
        wf = current_context()
        effect = wf.side_effect("counter", lambda: effects.append(1) or len(effects))
        return [effect, wf.get_data("k", "default"), wf.get_data("k"), wf.get_data("other", "none")]

    step = _asking(fn)
    assert step.start() == Needs(data="k")
    assert step.answer((True, json.dumps("value"))) == Needs(data="other")
    outcome = step.answer((False, None))
    assert isinstance(outcome, PassOutcome) and outcome.value == [1, "value", "value", "none"]
    assert effects == [1]  # the side effect before the read ran once
    # And a replay returns the recorded values without asking
    replayed = run_pass(snapshot(journal=dumped(outcome)), fn, [], {}, clock=forbidden_clock, origin="x")
    assert replayed.status == "succeeded" and replayed.value == outcome.value and effects == [1]


def test_with_no_driver_a_pass_that_needs_something_stops() -> None:
    def fn() -> Any:
        return current_context().get_data("k")

    outcome = run_pass(snapshot(), fn, [], {}, clock=Clock(), origin="start")
    assert outcome.status == "stopped" and outcome.needs == Needs(data="k") and not outcome.finished
    speculative = run_pass(snapshot(), _leaf_then_values([]), [], {}, clock=Clock(), origin="s", speculative=True)
    assert speculative.status == "stopped" and speculative.needs == Needs(lease=True) and speculative.entries == []


def test_the_pass_sees_its_drivers_context_variables() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("test_var", default="unset")
    var.set("from the driver")
    step = _asking(lambda: var.get())
    outcome = step.start()
    assert isinstance(outcome, PassOutcome) and outcome.value == "from the driver"
