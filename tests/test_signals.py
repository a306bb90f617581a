"""Signals: ``app.signal`` into a running workflow, ``wf.wait_for_signal`` with and without timeout."""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import pytest

from dramatiq_encore import EncoreError, NonDeterminismError, TaskError, WorkflowIdentity
from dramatiq_encore.actors.messages import ENVELOPE
from dramatiq_encore.state import Commit, StateBackend, Trigger
from dramatiq_encore.state.models import InvocationRecord, Outcome, ResolvedEntry, WaitEntry
from tests.conftest import Harness
from tests.support.waiting import wait_until as _until
from tests.test_contract import Tally, journal

WAIT = 20.0


def _waiting_on_signal(harness: Harness, invocation_id: str) -> bool:
    return any(e["e"] == "wait" for e in journal(harness.app, invocation_id)) and (
        harness.app.get_invocation(invocation_id).status == "suspended"
    )


def test_a_signal_wakes_a_waiting_workflow_with_its_payload(harness: Harness) -> None:
    app = harness.app
    passes = Tally()

    @app.task
    def approval(order_id: str) -> dict[str, Any]:
        passes.add()
        decision = approval.wf.wait_for_signal("decision")
        return {"order_id": order_id, "decision": decision, "at": approval.wf.utc_now().isoformat()}

    harness.start()
    inv = approval.send("A-1")
    assert _until(lambda: _waiting_on_signal(harness, inv.invocation_id))
    # When a signal arrives while it waits
    signal_id = app.signal(inv.invocation_id, "decision", {"approved": True, "by": "ada"})
    # Then the workflow resumes with the payload
    result = inv.wait(timeout=WAIT)
    assert result["decision"] == {"approved": True, "by": "ada"}
    entries = journal(app, inv.invocation_id)
    assert [e["id"] for e in entries if e["e"] == "sig"] == [signal_id]
    assert passes[None] >= 2


def test_signals_sent_before_the_wait_are_kept_and_consumed_in_order(harness: Harness) -> None:
    app = harness.app
    gate = threading.Event()

    @app.task
    def hold() -> None:
        gate.wait(WAIT)

    @app.task
    def collector() -> list[Any]:
        collector.wf.execute_task(hold)  # signals arrive while this step runs
        first = collector.wf.wait_for_signal("item")
        other = collector.wf.wait_for_signal("other")
        second = collector.wf.wait_for_signal("item")
        return [first, other, second]

    harness.start()
    inv = collector.send()
    assert _until(lambda: any(e["e"] == "step" for e in journal(app, inv.invocation_id)))
    # Messages sent in quick succession may be processed in any order by the worker threads:
    # each signal is recorded before the next is sent, so the arrival order is the send order.
    for count, (name, payload) in enumerate((("item", 1), ("other", "x"), ("item", 2)), start=1):
        app.signal(inv.invocation_id, name, payload)
        assert _until(lambda n=count: sum(e["e"] == "sig" for e in journal(app, inv.invocation_id)) == n)
    gate.set()
    assert inv.wait(timeout=WAIT) == [1, "x", 2]


def test_a_duplicated_signal_is_recorded_once(harness: Harness) -> None:
    app = harness.app

    @app.task
    def two_items() -> list[Any]:
        return [two_items.wf.wait_for_signal("item"), two_items.wf.wait_for_signal("item", timeout=1.0)]

    harness.start()
    inv = two_items.send()
    assert _until(lambda: _waiting_on_signal(harness, inv.invocation_id))
    app.signal(inv.invocation_id, "item", "once", signal_id="sig-1")
    app.signal(inv.invocation_id, "item", "once", signal_id="sig-1")  # e.g. a producer's retry
    with pytest.raises(TaskError) as err:  # the second wait times out: the copy was not a new signal
        inv.wait(timeout=WAIT)
    assert err.value.error_type == "StepTimeout"
    assert sum(e["e"] == "sig" for e in journal(app, inv.invocation_id)) == 1


def test_wait_for_signal_times_out_deterministically(harness: Harness) -> None:
    app = harness.app
    caught = Tally()

    @app.task
    def patient() -> dict[str, Any]:
        wf = patient.wf
        try:
            wf.wait_for_signal("go", timeout=0.5)
            first = "signalled"
        except TimeoutError:
            caught.add()
            first = "timed out"
        second = wf.wait_for_signal("go", timeout=30)  # a late "go" is for this wait
        return {"first": first, "second": second, "marker": wf.uuid()}

    harness.start()
    inv = patient.send()
    assert _until(lambda: any(e["e"] == "res" for e in journal(app, inv.invocation_id)))
    assert _until(lambda: _waiting_on_signal(harness, inv.invocation_id))
    app.signal(inv.invocation_id, "go", "late")
    result = inv.wait(timeout=WAIT)
    assert result["first"] == "timed out" and result["second"] == "late"
    assert caught[None] >= 2  # raised on the timed-out pass and again on replay


def test_a_signal_racing_its_timeout_resolves_the_wait_once(harness: Harness) -> None:
    app = harness.app

    @app.task
    def racer(rounds: int) -> list[str]:
        out = []
        for _ in range(rounds):
            try:
                out.append(racer.wf.wait_for_signal("ping", timeout=0.05))
            except TimeoutError:
                out.append("timeout")
        return out

    harness.start()
    inv = racer.send(20)
    for i in range(20):  # signals land around the timeouts
        app.signal(inv.invocation_id, "ping", f"p{i}")
        time.sleep(0.03)
    result = inv.wait(timeout=WAIT)
    signals = [r for r in result if r != "timeout"]
    # Each signal is consumed at most once, in order; a replay-stable outcome per wait.
    assert signals == sorted(signals, key=lambda s: int(s[1:])) and len(set(signals)) == len(signals)
    entries = journal(app, inv.invocation_id)
    resolved = [e["n"] for e in entries if e["e"] == "res"]
    assert len(resolved) == len(set(resolved)) == 20


def test_a_plain_dramatiq_message_delivers_a_signal(harness: Harness) -> None:
    app = harness.app

    @app.task
    def listener() -> Any:
        return listener.wf.wait_for_signal("note")

    harness.start()
    inv = listener.send()
    assert _until(lambda: _waiting_on_signal(harness, inv.invocation_id))
    # Given the documented body, built without the library's helpers
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=listener.queue_name,
        actor_name="listener",
        args=(),
        kwargs={},
        options={ENVELOPE: {"kind": "signal", "invocation_id": inv.invocation_id, "name": "note", "payload": [1, 2]}},
    )
    app.broker.enqueue(message)
    assert inv.wait(timeout=WAIT) == [1, 2]
    assert [e["id"] for e in journal(app, inv.invocation_id) if e["e"] == "sig"] == [message.message_id]


def test_a_signal_sent_to_another_task_is_forwarded_to_the_workflow_s_own(harness: Harness) -> None:
    app = harness.app

    @app.task
    def bystander() -> None:
        return None

    @app.task
    def addressee() -> Any:
        return addressee.wf.wait_for_signal("note")

    harness.start()
    inv = addressee.send()
    assert _until(lambda: _waiting_on_signal(harness, inv.invocation_id))
    envelope = {"kind": "signal", "invocation_id": inv.invocation_id, "name": "note", "payload": "hi"}
    app.broker.enqueue(bystander.actor.message_with_options(args=(), **{ENVELOPE: envelope}))
    assert inv.wait(timeout=WAIT) == "hi"


def test_a_raw_signal_that_arrives_before_its_workflow_starts_is_kept(harness: Harness) -> None:
    app = harness.app

    @app.task
    def late_starter() -> Any:
        return late_starter.wf.wait_for_signal("note")

    harness.start()
    # Given a producer that signals a workflow id before the workflow's start was processed
    envelope = {"kind": "signal", "invocation_id": "order-late", "name": "note", "payload": "early"}
    app.broker.enqueue(late_starter.actor.message_with_options(args=(), **{ENVELOPE: envelope}))
    time.sleep(0.3)
    # Then the signal is re-sent until the workflow exists, and reaches it
    inv = late_starter.send_with_options(workflow_id="order-late")
    assert inv.wait(timeout=WAIT) == "early"


def test_signal_to_an_unknown_workflow_is_refused(harness: Harness) -> None:
    harness.start()
    with pytest.raises(EncoreError, match="no workflow 'nobody'"):
        harness.app.signal("nobody", "x", timeout=0.1)


def test_changed_signal_name_fails_with_nondeterminism(harness: Harness) -> None:
    code = {"name": "first"}

    @harness.app.task
    def evolving() -> Any:
        return evolving.wf.wait_for_signal(code["name"])

    harness.start()
    inv = evolving.send()
    assert _until(lambda: _waiting_on_signal(harness, inv.invocation_id))
    code["name"] = "second"
    harness.app.signal(inv.invocation_id, "first", None)
    with pytest.raises(TaskError) as err:
        inv.wait(timeout=WAIT)
    assert err.value.error_type == NonDeterminismError.__name__


# -- the state primitives behind signals and races (each backend of the harness) ---------------


def _start(state: StateBackend, invocation_id: str) -> str:
    record = InvocationRecord(
        invocation_id=invocation_id,
        task="flow",
        queue="default",
        identity=WorkflowIdentity.root(invocation_id, "flow"),
        digest="d",
        seed="s",
    )
    token = state.deliver(invocation_id, Trigger.start(), record).token
    assert token is not None
    return token


def _wait_entry(n: int) -> str:
    return WaitEntry(n=n, name="go", timeout=1.0, due=0.0).model_dump_json()


#: What a wait step with a timeout (due at 0.0, long past) records for the store's checks.
WAIT_STEPS = {1: "t:0.0"}


def test_state_a_signal_wakes_only_the_invocation_waiting_on_its_name(harness: Harness) -> None:
    state = harness.app.state
    token = _start(state, "wf-s")
    commit = Commit(entries=[_wait_entry(1)], status="suspended", signals=["go"], seen=0)
    committed = state.commit("wf-s", token, commit)
    assert committed.ok and not committed.rerun
    # When a signal of another name arrives, then one of the awaited name
    other = state.deliver("wf-s", Trigger.signal("other", 1, "a"), None)
    awaited = state.deliver("wf-s", Trigger.signal("go", 2, "b"), None)
    again = state.deliver("wf-s", Trigger.signal("go", 2, "b"), None)
    # Then only the awaited one grants the lease, and each is journaled once
    assert other.token is None and not other.locked
    assert awaited.token is not None and again.duplicate
    assert [e["e"] for e in journal(harness.app, "wf-s")] == ["wait", "sig", "sig"]


def test_state_a_wait_for_any_wakes_on_the_first_member(harness: Harness) -> None:
    state = harness.app.state
    token = _start(state, "wf-a")
    commit = Commit(
        entries=[_wait_entry(1)], status="suspended", waiting=[1], signals=["go"], wake_any=True, seen=0,
        steps=WAIT_STEPS,
    )
    assert state.commit("wf-a", token, commit).ok
    # When the timer of step 1 fires, the invocation wakes although no signal came
    fired = state.deliver("wf-a", Trigger.timer(1, 0.0), None)
    assert fired.token is not None
    assert state.timer_due("wf-a", 1) is None


def test_state_a_claim_on_a_step_resolved_meanwhile_is_stale(harness: Harness) -> None:
    state = harness.app.state
    token = _start(state, "wf-c")
    suspend = Commit(
        entries=[_wait_entry(1)], status="suspended", waiting=[1], signals=["go"], wake_any=True, seen=0,
        steps=WAIT_STEPS,
    )
    assert state.commit("wf-c", token, suspend).ok
    token = state.deliver("wf-c", Trigger.signal("go", "payload", "s1"), None).token or ""  # a pass starts
    _, before = state.load("wf-c", 0)
    # When the step's timer fires while the pass consumes the signal
    state.deliver("wf-c", Trigger.timer(1, 0.0), None)
    claim = ResolvedEntry(n=1, o=Outcome(ok=True, value={"id": "s1", "payload": "payload"})).model_dump_json()
    finish = Commit(entries=[claim], status="succeeded", outcome=Outcome(ok=True), claims=[1], seen=len(before))
    stale = state.commit("wf-c", token, finish)
    # Then nothing is written, the lease is kept, and the next pass sees the timer's resolution
    assert not stale.ok and stale.rerun
    _, after = state.load("wf-c", 0)
    assert after[: len(before)] == before and len(after) == len(before) + 1 and '"value":null' in after[-1]
    assert state.commit("wf-c", token, Commit(entries=[], status="succeeded", outcome=Outcome(ok=True))).ok


def test_state_a_journal_that_grew_during_the_pass_reruns_it(harness: Harness) -> None:
    state = harness.app.state
    token = _start(state, "wf-g")
    # A signal arrives while the first pass runs (it saw an empty journal)
    assert state.deliver("wf-g", Trigger.signal("go", 1, "early"), None).locked
    suspend = Commit(entries=[_wait_entry(1)], status="suspended", signals=["go"], seen=0)
    committed = state.commit("wf-g", token, suspend)
    assert committed.ok and committed.rerun  # not suspended: the pass runs again and finds it

