"""The workflow index at the state level, on memory, Redis and Redis Cluster: written by the
same atomic steps that change a status, so it never disagrees with the records."""

from __future__ import annotations

import time
import uuid

from dramatiq_encore.state import RedisState
from dramatiq_encore.state.backend import Commit, StateBackend, Trigger
from dramatiq_encore.state.models import Outcome
from dramatiq_encore.state.operations import Operations
from tests.integration.state_support import (
    MakeState,
    child_steps,
    entry,
    finish_child,
    record,
    start,
    suspend_on,
)


def _ops(state: StateBackend) -> Operations:
    assert isinstance(state, Operations)
    return state


def _listed(state: StateBackend, status: str | None = None, workflow_type: str | None = None) -> list[str]:
    return [row.workflow_id for row in _ops(state).list_index(status, workflow_type, 100, None)]


def test_every_status_change_moves_the_workflow_in_the_index(state: StateBackend) -> None:
    # A new root is pending, then running while its first pass holds the lease
    delivery = state.deliver("wf-1", Trigger.start(), record("wf-1"))
    assert delivery.token is not None
    assert _listed(state, "running") == ["wf-1"] and _listed(state, "pending") == []
    # Suspended once its pass committed a wait; running again when the result wakes it
    assert state.commit(
        "wf-1", delivery.token, Commit(entries=[], status="suspended", waiting=[1], steps=child_steps("wf-1", 1))
    ).ok
    assert _listed(state, "suspended") == ["wf-1"] and _listed(state, "running") == []
    assert _ops(state).count_index("suspended") == 1
    child = finish_child(state, "wf-1", 1, Outcome(ok=True, value=1))
    token = state.deliver("wf-1", Trigger.result(1, child), None).token
    assert token is not None and _listed(state, "running") == ["wf-1"]
    # Children are never listed: only root workflows are
    assert _listed(state) == ["wf-1"] and _listed(state, workflow_type="flow") == ["wf-1"]
    # Finished: listed by its final status, with its finish time
    assert state.commit("wf-1", token, Commit(entries=[], status="failed", outcome=Outcome(ok=False))).ok
    [row] = _ops(state).list_index("failed", "flow", 10, None)
    assert row.status == "failed" and row.type == "flow" and row.finished is not None
    assert _listed(state, "running") == [] and _ops(state).count_index("suspended") == 0


def test_a_page_continues_after_the_last_row_even_among_equal_start_times(state: StateBackend) -> None:
    ids = [f"wf-{n:02d}" for n in range(12)]
    for workflow_id in ids:
        suspend_on(state, workflow_id, 1)
    seen: list[str] = []
    after = None
    while True:
        rows = _ops(state).list_index("suspended", None, 5, after)
        if not rows:
            break
        seen += [row.workflow_id for row in rows]
        after = (rows[-1].started_ms, rows[-1].workflow_id)
    assert sorted(seen) == ids and len(seen) == len(set(seen))
    starts = [row.started_ms for row in _ops(state).list_index(None, None, 100, None)]
    assert starts == sorted(starts, reverse=True)


def test_an_expired_workflow_leaves_the_index_and_its_id_can_be_used_again(make_redis: MakeState) -> None:
    state = make_redis(retention=1)
    assert isinstance(state, RedisState)
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    token = start(state, workflow_id)
    assert state.commit(workflow_id, token, Commit(entries=[], status="succeeded", outcome=Outcome(ok=True))).ok
    assert _listed(state, "succeeded") == [workflow_id]
    time.sleep(2.2)  # its retention (1 s) passes: its keys expire, a listing prunes it
    assert _listed(state) == [] and _listed(state, "succeeded") == []
    shard = state.keys.shard_of(workflow_id)
    index_keys = [state.keys.index(shard, *f) for f in [(None, None), ("succeeded", None), (None, "flow")]]
    assert all(state.client.zcard(key) == 0 for key in index_keys)
    # The id starts a new workflow, listed once, as pending/running only
    start(state, workflow_id)
    assert _listed(state) == [workflow_id] and _listed(state, "running") == [workflow_id]
    assert _listed(state, "succeeded") == []


def test_a_retried_root_keeps_its_tree_until_it_finishes_again(make_redis: MakeState) -> None:
    state = make_redis(retention=60)
    assert isinstance(state, RedisState)
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    suspend_on(state, workflow_id, 1)
    child = finish_child(state, workflow_id, 1, Outcome(ok=False))
    token = state.deliver(workflow_id, Trigger.result(1, child), None).token
    assert token is not None
    data = {workflow_id: {"stage": '"charging"'}}
    assert state.commit(
        workflow_id, token, Commit(entries=[], status="failed", outcome=Outcome(ok=False), data=data)
    ).ok
    tree = [
        state.keys.meta(workflow_id),
        state.keys.journal(workflow_id),
        state.keys.meta(child),
        state.keys.data(workflow_id),
    ]
    assert all(0 < state.client.ttl(key) <= 60 for key in tree), [state.client.ttl(k) for k in tree]  # all registered
    meta = state.get_meta(workflow_id)
    assert meta is not None
    again = meta.record.model_copy(update={"run": 1, "first_step": 1})
    assert state.reopen(again, 0, [entry(0.5)], 0) is None
    assert all(state.client.ttl(key) == -1 for key in tree), [state.client.ttl(k) for k in tree]
    assert state.client.ttl(state.keys.registry(workflow_id)) == -1
    assert _listed(state, "pending") == [workflow_id] and _listed(state, "failed") == []
    assert state.reopen(again, 0, [], 0) == "it is pending, not failed"
