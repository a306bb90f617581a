"""``wf.continue_as_new`` and ``wf.step_count``: bounded histories for long-lived workflows."""

from __future__ import annotations

from typing import Any

from dramatiq_encore import WorkflowIdentity
from dramatiq_encore.state import Commit, Trigger
from dramatiq_encore.state.models import InvocationRecord, SignalEntry, ValueEntry
from tests.conftest import Harness
from tests.support.waiting import wait_until as _until
from tests.test_contract import Tally, journal

WAIT = 20.0


def test_continue_as_new_restarts_with_new_arguments_and_a_fresh_journal(harness: Harness) -> None:
    app = harness.app
    runs = Tally()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def accumulate(round_no: int, total: int, seen: list[Any]) -> dict[str, Any]:
        wf = accumulate.wf
        runs.add(round_no)
        step = wf.execute_task(add, total, round_no)
        seen = [*seen, {"random": wf.random(), "child": step.invocation_id, "steps": wf.step_count}]
        if round_no < 4:
            wf.continue_as_new(round_no + 1, step.result, seen)
        wf.set_data("rounds", round_no)
        return {"total": step.result, "seen": seen}

    harness.start()
    inv = accumulate.send(1, 0, [])
    result = inv.wait(timeout=WAIT)

    assert result["total"] == 1 + 2 + 3 + 4
    seen = result["seen"]
    # Each run draws its own values, numbers its steps on from the last run, and counts its own steps
    assert len({s["random"] for s in seen}) == 4
    assert [s["child"] for s in seen] == [f"{inv.invocation_id}/{n}" for n in (1, 2, 3, 4)]
    assert [s["steps"] for s in seen] == [1, 1, 1, 1]
    assert set(runs.snapshot()) == {1, 2, 3, 4}
    # The last run's journal holds only its own history; the handle, id and data are the workflow's
    entries = journal(app, inv.invocation_id)
    assert [e["e"] for e in entries].count("step") == 1
    meta = app.state.get_meta(inv.invocation_id)
    assert meta is not None and meta.record.run == 3 and meta.record.args[0] == 4
    assert app.get_workflow_data(inv.invocation_id) == {"rounds": 4}


def test_unconsumed_signals_are_carried_into_the_next_run(harness: Harness) -> None:
    app = harness.app

    @app.task
    def inbox(handled: list[Any]) -> list[Any]:
        item = inbox.wf.wait_for_signal("item")
        handled = [*handled, item]
        if item == "stop":
            return handled
        inbox.wf.continue_as_new(handled)

    harness.start()
    inv = inbox.send([])
    assert _until(lambda: app.get_invocation(inv.invocation_id).status == "suspended")
    # Signals sent in quick succession are recorded in the order workers process them, which
    # may differ from the order they were sent in: each is awaited here before the next.
    for count, item in enumerate(("a", "b", "c"), start=1):
        app.signal(inv.invocation_id, "item", item)
        assert _until(lambda n=count: _signals(app, inv.invocation_id) >= n)
    app.signal(inv.invocation_id, "item", "stop")
    assert inv.wait(timeout=WAIT) == ["a", "b", "c", "stop"]


def _signals(app: Any, invocation_id: str) -> int:
    """Signals recorded so far, over every run (a new run's journal starts with the carried ones)."""
    meta = app.state.get_meta(invocation_id)
    consumed = 0 if meta is None else len(meta.record.args[0])
    return consumed + sum(e["e"] == "sig" for e in journal(app, invocation_id))


def test_state_a_reset_replaces_the_journal_and_stale_prefixes_reload_from_zero(harness: Harness) -> None:
    state = harness.app.state
    first = InvocationRecord(
        invocation_id="wf-r",
        task="flow",
        queue="q",
        identity=WorkflowIdentity.root("wf-r", "flow"),
        digest="d",
        seed="s",
    )
    token = state.deliver("wf-r", Trigger.start(), first).token
    assert token is not None
    values = [ValueEntry(k="random", v=i / 10).model_dump_json() for i in range(3)]
    timer = Commit(entries=values, status="suspended", waiting=[1], seen=0, steps={1: "t:0.0"})
    assert state.commit("wf-r", token, timer).ok
    token = state.deliver("wf-r", Trigger.timer(1, 0.0), None).token  # wakes it: the pass continues as new
    assert token is not None
    second = first.model_copy(update={"run": 1, "seed": "s1", "first_step": 1, "args": [2]})
    carried = [SignalEntry(name="x", payload=1, id="sig-1").model_dump_json()]
    reset = Commit(entries=carried, status="running", seen=len(state.load("wf-r", 0)[1]), reset=second)
    # When the run continues as new, the record and the journal are replaced and the lease kept
    committed = state.commit("wf-r", token, reset)
    assert committed.ok and committed.rerun
    meta, entries = state.load("wf-r", 0)
    assert meta is not None and meta.record.run == 1 and meta.record.args == [2] and entries == carried
    grown = [ValueEntry(k="random", v=0.9).model_dump_json()] * 4
    suspend = Commit(entries=grown, status="suspended", waiting=[2], seen=1, steps={2: "t:0.0"})
    assert state.commit("wf-r", token, suspend).ok
    # Then a worker whose cached prefix (4 entries) belongs to run 0 gets the journal from 0
    delivery = state.deliver("wf-r", Trigger.timer(2, 0.0), None, load_from=4, run=0)
    assert delivery.token is not None and delivery.loaded_from == 0
    assert delivery.record is not None and delivery.record.run == 1
    assert delivery.entries is not None and len(delivery.entries) == 1 + 4 + 1

