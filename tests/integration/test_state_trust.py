"""The state store checks every trigger against what the invocation recorded (the trust model).

Same backends as the state contract: MemoryState (the reference), RedisState and RedisState
on a Redis Cluster. Each test names a verdict of ``deliver``: ok, refused, early, due,
ignored, unknown (and lost).
"""

from __future__ import annotations

import time

import pytest

from dramatiq_encore.errors import StateLost
from dramatiq_encore.state import Commit, StateBackend, Trigger
from dramatiq_encore.state.models import Outcome, ParentRef, ResolvedEntry
from tests.integration.state_support import (
    child_record,
    child_steps,
    entry,
    finish_child,
    record,
    start,
    suspend_on,
    timer_steps,
    untimed,
)


def _journal(state: StateBackend, invocation_id: str) -> list[str]:
    return state.load(invocation_id, 0)[1]


# -- children's starts ----------------------------------------------------------------------
def test_a_child_start_counts_only_for_the_step_its_parent_recorded(state: StateBackend) -> None:
    # Given a parent whose pass runs (its lease held) and has not recorded step 1 yet
    token = start(state, "wf-1")
    child = child_record("wf-1", 1)
    # Then the child's start is early, and creates nothing
    early = state.deliver(child.invocation_id, Trigger.start(), child)
    assert early.verdict == "early" and state.get_meta(child.invocation_id) is None
    # When the parent's commit records step 1 with another child (other arguments)
    other = child.model_copy(update={"digest": "other"})
    assert state.commit(
        "wf-1", token, Commit(entries=[entry(1)], status="suspended", waiting=[1], steps={1: "c:" + other.fingerprint})
    ).ok
    # Then this start is refused, and the recorded one creates the child
    refused = state.deliver(child.invocation_id, Trigger.start(), child)
    assert refused.verdict == "refused" and "step 1" in refused.detail
    assert state.deliver(other.invocation_id, Trigger.start(), other).verdict == "ok"


def test_a_start_for_an_existing_child_with_another_identity_is_refused(state: StateBackend) -> None:
    suspend_on(state, "wf-1", 1)
    child = child_record("wf-1", 1)
    start(state, child.invocation_id, child)
    parent = ParentRef(invocation_id="wf-1", task="elsewhere", queue="default", step=1)
    forged = child.model_copy(update={"parent": parent})
    delivery = state.deliver(child.invocation_id, Trigger.start(), forged)
    assert delivery.verdict == "refused" and delivery.token is None


def test_a_child_start_for_a_finished_parent_that_never_recorded_the_step_is_refused(state: StateBackend) -> None:
    token = start(state, "wf-1")
    assert state.commit("wf-1", token, Commit(entries=[], status="succeeded", outcome=Outcome(ok=True))).ok
    child = child_record("wf-1", 1)
    assert state.deliver(child.invocation_id, Trigger.start(), child).verdict == "refused"


def test_a_child_start_whose_parent_the_store_does_not_know_marks_the_parent_lost(state: StateBackend) -> None:
    child = child_record("wf-gone", 1)
    delivery = state.deliver(child.invocation_id, Trigger.start(), child)
    assert (delivery.verdict, delivery.detail) == ("unknown", "lost")
    assert state.get_meta(child.invocation_id) is None  # no orphan record
    assert state.lost_reason("wf-gone") and state.lost_reason(child.invocation_id) is None
    with pytest.raises(StateLost) as err:
        state.wait_finished("wf-gone", timeout=5)
    assert err.value.invocation_id == "wf-gone"


# -- results --------------------------------------------------------------------------------
def test_a_result_counts_only_with_the_outcome_its_child_recorded(state: StateBackend) -> None:
    suspend_on(state, "wf-1", 1)
    # While the child has no record, or no outcome, the result is early and resolves nothing
    assert state.deliver("wf-1", Trigger.result(1, "wf-1/1"), None).verdict == "early"
    token = start(state, "wf-1/1", child_record("wf-1", 1))
    assert state.deliver("wf-1", Trigger.result(1, "wf-1/1"), None).verdict == "early"
    assert _journal(state, "wf-1") == [entry(0.5)]
    # Once it finished, its own outcome resolves the step
    outcome = Outcome(ok=False, invocation_id="wf-1/1")
    assert state.commit("wf-1/1", token, Commit(entries=[], status="failed", outcome=outcome)).ok
    delivery = state.deliver("wf-1", Trigger.result(1, "wf-1/1"), None)
    assert delivery.verdict == "ok" and delivery.token is not None
    assert untimed(_journal(state, "wf-1"))[-1] == ResolvedEntry(n=1, o=outcome).model_dump_json()


def test_a_result_for_a_step_that_is_no_child_task_is_refused(state: StateBackend) -> None:
    token = start(state, "wf-1")
    steps = timer_steps(time.time() + 3600, 1)
    assert state.commit("wf-1", token, Commit(entries=[], status="suspended", waiting=[1], steps=steps)).ok
    for step in (1, 2):  # a timer; not recorded at all
        delivery = state.deliver("wf-1", Trigger.result(step, f"wf-1/{step}"), None)
        assert delivery.verdict == "refused" and f"step {step}" in delivery.detail
    assert _journal(state, "wf-1") == []


# -- timers ---------------------------------------------------------------------------------
def test_a_timer_resolves_its_step_only_at_the_recorded_due_time(state: StateBackend) -> None:
    token = start(state, "wf-1")
    due = time.time() + 0.3
    steps = {**timer_steps(due, 1), **child_steps("wf-1", 2)}
    assert state.commit("wf-1", token, Commit(entries=[], status="suspended", waiting=[1], steps=steps)).ok
    # Another due time, or a step that is not a timer: refused
    assert state.deliver("wf-1", Trigger.timer(1, 0.0), None).verdict == "refused"
    assert state.deliver("wf-1", Trigger.timer(2, 0.0), None).verdict == "refused"
    # The recorded due time, before it passed: not yet, and when it is due
    early = state.deliver("wf-1", Trigger.timer(1, due), None)
    assert early.verdict == "due" and float(early.detail) == due
    time.sleep(0.35)
    fired = state.deliver("wf-1", Trigger.timer(1, due), None)
    assert fired.verdict == "ok" and fired.token is not None and len(_journal(state, "wf-1")) == 1


# -- signals --------------------------------------------------------------------------------
def test_signals_waiting_unconsumed_are_capped(state: StateBackend) -> None:
    token = start(state, "wf-1")
    assert state.commit("wf-1", token, Commit(entries=[], status="suspended", signals=["go"], steps={1: "w"})).ok
    assert state.deliver("wf-1", Trigger.signal("other", 1, "s1", limit=2), None).verdict == "ok"
    assert state.deliver("wf-1", Trigger.signal("other", 2, "s2", limit=2), None).verdict == "ok"
    refused = state.deliver("wf-1", Trigger.signal("go", 3, "s3", limit=2), None)
    assert refused.verdict == "refused" and "2 signals" in refused.detail
    meta = state.get_meta("wf-1")
    assert meta is not None and meta.signals_waiting == 2
    # A pass that consumes one makes room for one more
    lease = state.deliver("wf-1", Trigger.cancel(), None).token  # anything that wakes it
    assert lease is not None
    claim = ResolvedEntry(n=1, o=Outcome(ok=True, value={"id": "s1", "payload": 1})).model_dump_json()
    assert state.commit("wf-1", lease, Commit(entries=[claim], status="suspended", signals=["go"], claims=[1])).ok
    assert state.deliver("wf-1", Trigger.signal("go", 3, "s3", limit=2), None).verdict == "ok"


# -- finished invocations, earlier runs, unknown ids -----------------------------------------
def test_a_finished_invocation_takes_nothing_more(state: StateBackend) -> None:
    suspend_on(state, "wf-1", 1)
    child_id = finish_child(state, "wf-1", 1, Outcome(ok=True, value=1))
    token = state.deliver("wf-1", Trigger.result(1, child_id), None).token
    assert token is not None
    assert state.commit("wf-1", token, Commit(entries=[], status="succeeded", outcome=Outcome(ok=True))).ok
    journal = _journal(state, "wf-1")
    for trigger in (Trigger.result(1, child_id), Trigger.timer(1, 0.0), Trigger.signal("go", 1, "x"), Trigger.cancel()):
        delivery = state.deliver("wf-1", trigger, None)
        assert delivery.verdict == "ignored" and delivery.status == "succeeded", trigger
    assert _journal(state, "wf-1") == journal


def test_a_trigger_for_a_step_of_an_earlier_run_is_ignored(state: StateBackend) -> None:
    token = start(state, "wf-1")
    rec = record("wf-1")
    second = rec.model_copy(update={"run": 1, "seed": "s1", "first_step": 3})
    steps = child_steps("wf-1", 3)  # a child started by the pass that continued as new
    assert state.commit("wf-1", token, Commit(entries=[], status="running", reset=second, steps=steps)).rerun
    child_id = finish_child(state, "wf-1", 3, Outcome(ok=True, value=1))
    assert state.deliver("wf-1", Trigger.result(3, child_id), None).verdict == "ignored"
    assert _journal(state, "wf-1") == []


def test_messages_for_unknown_ids_mark_them_lost_until_started(state: StateBackend) -> None:
    for n, trigger in enumerate((Trigger.result(1, "gone-0/1"), Trigger.timer(1, 0.0), Trigger.signal("go", 1, "s"))):
        delivery = state.deliver(f"gone-{n}", trigger, None)
        assert (delivery.verdict, delivery.detail) == ("unknown", "lost")
        assert state.lost_reason(f"gone-{n}") and state.get_meta(f"gone-{n}") is None
    assert state.deliver("never", Trigger.cancel(), None).verdict == "unknown" and state.lost_reason("never") is None
    # A start creates it again: it is not lost any more
    start(state, "gone-0")
    assert state.lost_reason("gone-0") is None
