"""The pure engine's step kinds: parallel steps, timers, signals, races, cancel points, patches.

No broker and no store: each test runs passes with :func:`run` from the replay-engine tests
and plays the store's part by appending journal entries (a resolution, a signal, a cancel).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pytest

from dramatiq_encore import NonDeterminismError, TaskError
from dramatiq_encore.actors.context import current_context
from dramatiq_encore.errors import MisuseError, StepTimeout, WorkflowCancelled
from dramatiq_encore.state.models import CancelEntry, Outcome, ResolvedEntry, SignalEntry
from tests.unit.test_replay_engine import BASE_TIME, CHARGE, NOTIFY, RESERVE, Clock, dumped, failed, ok, run

UTC = dt.UTC


def resolved(n: int, value: Any = None) -> str:
    return ResolvedEntry(n=n, o=Outcome(ok=True, value=value)).model_dump_json()


def signal(name: str, payload: Any, signal_id: str) -> str:
    return SignalEntry(name=name, payload=payload, id=signal_id).model_dump_json()


# -- parallel steps ------------------------------------------------------------------------------


def fan_out() -> list[Any]:
    wf = current_context()
    handles = [wf.start_task(CHARGE, f"A-{i}", float(i)) for i in range(3)]
    return [inv.result for inv in wf.gather(*handles)]


def test_start_task_records_every_step_and_gather_waits_on_the_unresolved_ones() -> None:
    first = run(fan_out)
    assert first.status == "suspended"
    assert [s.n for s in first.new_steps] == [1, 2, 3]
    assert first.waiting == [1, 2, 3] and not first.wake_any
    steps = first.new_steps
    # When two of three results are in, the replay starts nothing new and waits on the third
    journal = [*dumped(first), ok(steps[2], "c"), ok(steps[0], "a")]
    again = run(fan_out, journal=journal)
    assert again.status == "suspended" and again.waiting == [2] and again.entries == []
    # And once all are in, results come back in call order, not arrival order
    done = run(fan_out, journal=[*journal, ok(steps[1], "b")])
    assert done.value == ["a", "b", "c"]


def test_gather_raises_the_first_failure_in_call_order() -> None:
    def fn() -> list[Any]:
        wf = current_context()
        handles = [wf.start_task(NOTIFY, str(i)) for i in range(3)]
        try:
            wf.gather(*handles)
        except TaskError as err:
            rest = wf.gather(*handles, return_exceptions=True)
            return [err.message, *(x.message if isinstance(x, TaskError) else x.result for x in rest)]
        return []

    first = run(fn)
    s1, s2, s3 = first.new_steps
    journal = [*dumped(first), failed(s3, message="third"), ok(s1, "one"), failed(s2, message="second")]
    assert run(fn, journal=journal).value == ["second", "one", "second", "third"]


def test_a_changed_parallel_step_is_nondeterminism() -> None:
    first = run(fan_out)

    def changed() -> Any:
        wf = current_context()
        wf.start_task(CHARGE, "A-0", 0.0)
        return wf.start_task(RESERVE, "A-1", [])

    outcome = run(changed, journal=dumped(first))
    assert outcome.status == "failed" and isinstance(outcome.exception, NonDeterminismError)
    assert "step 2" in str(outcome.exception) and "charge_payment" in str(outcome.exception)


def test_gather_refuses_a_handle_of_another_pass() -> None:
    kept: list[Any] = []

    def maker() -> None:
        kept.append(current_context().start_task(NOTIFY, "x"))

    run(maker)
    outcome = run(lambda: current_context().gather(kept[0]))
    assert outcome.status == "failed" and isinstance(outcome.exception, MisuseError)


# -- timers ----------------------------------------------------------------------------------------


def sleeper() -> str:
    wf = current_context()
    wf.sleep(dt.timedelta(minutes=5))
    return "awake"


def test_sleep_records_its_due_time_from_the_clock_and_waits_on_its_step() -> None:
    first = run(sleeper, clock=Clock())
    (timer,) = first.new_timers
    assert (timer.n, timer.seconds, timer.due) == (1, 300.0, BASE_TIME.timestamp() + 300)
    assert first.waiting == [1] and first.new_steps == []
    # A replay before the timer fired records nothing new (the due time is not recomputed)
    assert run(sleeper, journal=dumped(first), clock=Clock(BASE_TIME + dt.timedelta(hours=1))).entries == []
    assert run(sleeper, journal=[*dumped(first), resolved(1)]).value == "awake"


def test_changed_sleep_is_nondeterminism_and_negative_sleep_is_refused() -> None:
    first = run(sleeper)

    def shorter() -> None:
        current_context().sleep(60)

    outcome = run(shorter, journal=dumped(first))
    assert isinstance(outcome.exception, NonDeterminismError) and "sleep(300.0)" in str(outcome.exception)
    assert isinstance(run(lambda: current_context().sleep(-1)).exception, MisuseError)


def deadline() -> str:
    wf = current_context()
    try:
        return str(wf.execute_task_with_options(NOTIFY, args=("A-1",), timeout=10).result)
    except TimeoutError:
        return "late"


def test_a_deadline_race_is_decided_by_journal_order() -> None:
    first = run(deadline)
    assert first.waiting == [1, 2] and first.wake_any
    step = first.new_steps[0]
    # The timer's resolution came first: late, even once the child's result is also in
    late = [*dumped(first), resolved(2), ok(step, "done")]
    assert run(deadline, journal=late).value == "late"
    # The child's came first: its result, whatever the timer does later
    in_time = [*dumped(first), ok(step, "done"), resolved(2)]
    assert run(deadline, journal=in_time).value == "done"


# -- signals ---------------------------------------------------------------------------------------


def two_signals() -> list[Any]:
    wf = current_context()
    return [wf.wait_for_signal("go"), wf.wait_for_signal("go", timeout=30)]


def test_signals_are_consumed_in_journal_order_and_each_once() -> None:
    journal = [signal("other", "x", "s0"), signal("go", 1, "s1"), signal("go", 2, "s2")]
    outcome = run(two_signals, journal=journal)
    assert outcome.value == [1, 2]
    assert outcome.claims == [1, 2]  # resolved by the pass itself: the commit checks them
    # The replay takes the recorded resolutions, and consumes nothing again
    replay = run(two_signals, journal=[*journal, *dumped(outcome)])
    assert replay.value == [1, 2] and replay.entries == []


def test_a_wait_suspends_on_the_signal_name_and_with_a_timeout_on_either() -> None:
    first = run(two_signals)
    assert first.waiting == [] and first.waiting_signals == ["go"]
    second = run(two_signals, journal=[*dumped(first), signal("go", "a", "s1")])
    assert second.status == "suspended"
    assert second.waiting == [2] and second.waiting_signals == ["go"] and second.wake_any
    assert [t.n for t in second.new_timers] == [2]


def test_a_wait_whose_timer_resolved_first_times_out_even_if_a_signal_came() -> None:
    first = run(two_signals, journal=[signal("go", "a", "s1")])
    journal = [signal("go", "a", "s1"), *dumped(first), resolved(2), signal("go", "b", "s2")]
    outcome = run(two_signals, journal=journal)
    assert isinstance(outcome.exception, StepTimeout) and outcome.status == "failed"


# -- cancellation ----------------------------------------------------------------------------------


def cancellable() -> str:
    wf = current_context()
    wf.execute_task(CHARGE, "A-1", 1.0)
    try:
        wf.sleep(3600)
    finally:
        wf.execute_task(NOTIFY, "cleanup")
    return "done"


def test_cancel_takes_effect_at_the_first_step_that_cannot_complete_and_replays_there() -> None:
    first = run(cancellable)
    journal = [*dumped(first), ok(first.new_steps[0], 1)]
    second = run(cancellable, journal=journal)  # now sleeping
    journal += [*dumped(second), CancelEntry(reason="stop").model_dump_json()]
    # When the cancel is seen: step 1 replays from the journal, sleep raises, cleanup starts
    third = run(cancellable, journal=journal)
    assert third.status == "suspended" and third.cancel_raised
    assert [s.task for s in third.new_steps] == ["notify"]
    cleanup = third.new_steps[0]
    # Then, with the cleanup done, the replay raises at the same step and ends cancelled
    final = run(cancellable, journal=[*journal, *dumped(third), ok(cleanup, None)])
    assert final.status == "cancelled" and isinstance(final.exception, WorkflowCancelled)
    assert final.error is not None and final.error.type == "Cancelled" and "stop" in final.error.message
    assert not final.cancel_raised  # recorded earlier: no second cascade


def test_a_cancel_before_the_first_step_raises_at_it() -> None:
    # The first step is outside the try/finally: nothing to clean up, nothing started
    outcome = run(cancellable, journal=[CancelEntry().model_dump_json()])
    assert outcome.status == "cancelled" and outcome.cancel_raised
    assert outcome.new_steps == []


# -- patched and step_count ------------------------------------------------------------------------


def versioned() -> list[Any]:
    wf = current_context()
    wf.execute_task(CHARGE, "A-1", 1.0)
    count = wf.step_count
    if wf.patched("notify-first"):
        wf.execute_task(NOTIFY, "A-1")
    else:
        wf.execute_task(RESERVE, "A-1", [])
    return [count, wf.step_count]


def old_code() -> None:
    wf = current_context()
    wf.execute_task(CHARGE, "A-1", 1.0)
    wf.execute_task(RESERVE, "A-1", [])


def test_patched_is_false_for_histories_the_old_code_already_took_past_it() -> None:
    old = run(old_code)
    old_journal = [*dumped(old), ok(old.new_steps[0], 1)]
    old_journal += dumped(run(old_code, journal=old_journal))
    # A workflow started by the old code, now at step 2, replays on the old path
    outcome = run(versioned, journal=[*old_journal, ok_n(2, "reserved")])
    assert outcome.value == [1, 2]
    # A new run takes the new path, records the choice, and keeps it on replay
    new = run(versioned, journal=[*dumped(run(versioned)), ok_n(1, 1)])
    assert new.new_steps[0].task == "notify"
    replay = run(versioned, journal=[*dumped(run(versioned)), ok_n(1, 1), *dumped(new), ok_n(2, "sent")])
    assert replay.value == [1, 2] and replay.entries == []


def ok_n(n: int, value: Any) -> str:
    return ResolvedEntry(n=n, o=Outcome(ok=True, value=value)).model_dump_json()


@pytest.mark.parametrize("fn", [fan_out, sleeper, two_signals])
def test_every_step_operation_fails_fast_after_a_suspension_is_swallowed(fn: Any) -> None:
    def swallowing() -> Any:
        with contextlib.suppress(BaseException):  # what the engine must survive
            fn()
        return "carried on"

    outcome = run(swallowing)
    assert outcome.status == "failed" and isinstance(outcome.exception, MisuseError)
