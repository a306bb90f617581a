"""The cheap replay of a recorded step (``StepOperations._replayed``) decides exactly as the full path.

Each workflow is driven to its end twice, once with the cheap path and once with it turned
off (``same_plain_args`` always "not known"): every pass must return the same outcome and
record the same entries, and a replay that diverges must fail the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from dramatiq_encore import NonDeterminismError
from dramatiq_encore.actors.codec import TaskCodec
from dramatiq_encore.actors.context import current_context
from dramatiq_encore.actors.replay import run_pass
from dramatiq_encore.state.models import CancelEntry
from tests.unit.test_replay_engine import CHARGE, NOTIFY, Clock, FakeStep, drive, dumped, ok, snapshot


def _count(i: int) -> int:
    raise AssertionError("never runs in the engine")


def _pair(a: str, b: float) -> dict[str, Any]:
    raise AssertionError("never runs in the engine")


COUNT = FakeStep("count", _count)
PAIR = FakeStep("pair", _pair)


def _mixed() -> Any:
    wf = current_context()
    out = [wf.execute_task(COUNT, i).result for i in range(3)]
    out.append(wf.execute_task(PAIR, "x", 1.5).result)  # a dict result: loaded, not shared
    out.append(wf.execute_task(CHARGE, "A-1", amount=2.0).result)  # keyword arguments: the full path
    out.append(wf.execute_task(NOTIFY, "A-1").result)
    return out


def _children(step: Any) -> str:
    return ok(step, {"n": step.n} if step.task == "pair" else step.n)


def _full_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskCodec, "same_plain_args", lambda self, args, recorded: False)


def test_the_cheap_replay_and_the_full_path_record_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap = drive(_mixed, children=_children)
    _full_path_only(monkeypatch)
    full = drive(_mixed, children=_children)
    assert _untimed(cheap.journal) == _untimed(full.journal) and cheap.outcome.value == full.outcome.value
    assert cheap.passes == full.passes == 7


def _untimed(journal: list[str]) -> list[dict[str, Any]]:
    """The entries without the wall-clock time steps carry for operators (``t``)."""
    return [{k: v for k, v in json.loads(entry).items() if k != "t"} for entry in journal]


def test_a_dict_result_is_a_fresh_copy_on_every_replay() -> None:
    run = drive(_mixed, children=_children)
    snap = snapshot(journal=run.journal)

    def mutating() -> Any:
        result = _mixed()
        result[3]["n"] = "changed by the workflow"
        return result

    first = run_pass(snap, mutating, [], {}, clock=Clock(), origin="x")
    second = run_pass(snap, mutating, [], {}, clock=Clock(), origin="x")
    assert first.value == second.value and first.value[3] is not second.value[3]


@pytest.mark.parametrize("changed", [1, 1.0, True, "1", None, 2])
def test_an_argument_of_another_type_or_value_is_judged_as_the_full_path_judges_it(
    changed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a history where step 2 recorded count(1)
    def flow(second: Any) -> Callable[[], Any]:
        def fn() -> Any:
            wf = current_context()
            return [wf.execute_task(COUNT, 0).result, wf.execute_task(COUNT, second).result]

        return fn

    journal = drive(flow(1), children=_children).journal

    def verdict() -> Any:
        outcome = run_pass(snapshot(journal=journal), flow(changed), [], {}, clock=Clock(), origin="x")
        return outcome.status, type(outcome.exception).__name__, outcome.value

    cheap = verdict()
    _full_path_only(monkeypatch)
    assert cheap == verdict()
    if changed in ("1", None, 2) or type(changed) is float:  # what the digest tells apart
        assert cheap[:2] == ("failed", NonDeterminismError.__name__)


def test_cancellation_after_cheaply_replayed_steps_takes_effect_at_the_same_operation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def flow() -> Any:
        wf = current_context()
        for i in range(3):
            wf.execute_task(COUNT, i)
        return "done"

    def cancelled_at(journal: list[str]) -> Any:
        first = run_pass(snapshot(journal=journal), flow, [], {}, clock=Clock(), origin="x")
        again = run_pass(snapshot(journal=[*journal, *dumped(first)]), flow, [], {}, clock=Clock(), origin="x")
        return first.status, [e.model_dump() for e in first.entries], again.status

    run = drive(flow, children=_children)
    journal = [*run.journal[:-1], CancelEntry(reason="stop").model_dump_json()]  # step 3 unresolved, cancelled
    cheap = cancelled_at(journal)
    _full_path_only(monkeypatch)
    assert cheap == cancelled_at(journal) and cheap[0] == "cancelled"


def test_replaying_a_step_costs_little_whatever_the_history() -> None:
    def flow(n: int) -> Callable[[], Any]:
        def fn() -> Any:
            wf = current_context()
            return sum(wf.execute_task(COUNT, i).result for i in range(n))

        return fn

    run = drive(flow(300), children=_children, max_passes=400)
    snap = snapshot(journal=run.journal)
    started = time.perf_counter()
    for _ in range(5):
        assert run_pass(snap, flow(300), [], {}, clock=Clock(), origin="x").status == "succeeded"
    per_step = (time.perf_counter() - started) / (5 * 300)
    print(f"replayed step: {per_step * 1e6:.2f} us")
    assert per_step < 50e-6  # loose: a benchmark measures it (benchmarks/README.md); this catches a slow path
