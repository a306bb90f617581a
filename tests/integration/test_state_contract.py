"""The state backends' contract: every primitive behaves the same on memory, Redis and Redis Cluster.

``state`` is parametrised over MemoryState (the reference), RedisState on the local Redis
and RedisState on a throwaway 3-node Redis Cluster. Each Redis test uses a fresh key
prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
import uuid

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from dramatiq_encore.errors import ConfigurationError
from dramatiq_encore.state import Commit, RedisState, StateBackend, Trigger
from dramatiq_encore.state.backend import Then
from dramatiq_encore.state.keys import Keys
from dramatiq_encore.state.models import ErrorInfo, Outcome, ResolvedEntry
from tests.integration.state_support import (
    MakeState,
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


# -- deliver --------------------------------------------------------------------------------
def test_start_creates_the_invocation_and_grants_the_lease(state: StateBackend) -> None:
    rec = record("wf-1")
    delivery = state.deliver("wf-1", Trigger.start(), rec)
    assert (delivery.exists, delivery.duplicate, delivery.status, delivery.locked) == (True, False, "running", False)
    assert delivery.token
    meta = state.get_meta("wf-1")
    assert meta is not None and meta.record == rec and meta.status == "running" and meta.outcome is None


def test_duplicate_start_gets_no_second_lease_while_held(state: StateBackend) -> None:
    start(state, "wf-1")
    again = state.deliver("wf-1", Trigger.start(), record("wf-1"))
    assert (again.duplicate, again.token, again.locked, again.conflict) == (True, None, True, False)


def test_start_with_other_arguments_conflicts_and_changes_nothing(state: StateBackend) -> None:
    token = start(state, "wf-1")
    state.release("wf-1", token)
    clash = state.deliver("wf-1", Trigger.start(), record("wf-1", digest="other"))
    assert (clash.conflict, clash.duplicate, clash.token) == (True, True, None)
    meta = state.get_meta("wf-1")
    assert meta is not None and meta.record.digest == "d0"


def test_messages_for_unknown_invocations_create_nothing(state: StateBackend) -> None:
    assert not state.deliver("ghost", Trigger.result(1, "ghost/1"), None).exists
    assert not state.deliver("ghost", Trigger.start(), None).exists
    assert state.get_meta("ghost") is None and state.load("ghost", 0) == (None, [])


def test_result_resolves_the_step_once_with_the_childs_outcome(state: StateBackend) -> None:
    # Given a workflow suspended on step 1 whose child succeeded
    suspend_on(state, "wf-1", 1)
    outcome = Outcome(ok=True, value={"n": 2**70, "s": 'quote " and \u00e9'}, invocation_id="wf-1/1")
    child_id = finish_child(state, "wf-1", 1, outcome)
    # When the child's result is delivered twice
    first = state.deliver("wf-1", Trigger.result(1, child_id), None)
    second = state.deliver("wf-1", Trigger.result(1, child_id), None)
    # Then the step is resolved once, with the child's outcome, and the first gets the lease
    assert first.token and not first.duplicate and first.status == "running"
    assert second.duplicate and second.token is None and second.locked
    _, journal = state.load("wf-1", 1)
    assert untimed(journal) == [ResolvedEntry(n=1, o=outcome).model_dump_json()]


def test_result_of_an_unfinished_child_resolves_nothing(state: StateBackend) -> None:
    suspend_on(state, "wf-1", 1)
    start(state, "wf-1/1", child_record("wf-1", 1))
    delivery = state.deliver("wf-1", Trigger.result(1, "wf-1/1"), None)
    assert delivery.verdict == "early" and delivery.token is None
    assert state.load("wf-1", 1)[1] == [] and state.get_meta("wf-1").status == "suspended"  # type: ignore[union-attr]


def test_only_one_of_concurrent_deliveries_gets_the_lease(state: StateBackend) -> None:
    barrier = threading.Barrier(8)
    tokens: list[str | None] = []

    def deliver() -> None:
        barrier.wait()
        tokens.append(state.deliver("wf-1", Trigger.start(), record("wf-1")).token)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([token for token in tokens if token]) == 1


# -- commit ---------------------------------------------------------------------------------
def test_commit_with_waiting_steps_already_resolved_reruns_and_keeps_the_lease(state: StateBackend) -> None:
    # Given a pass that started child 1 and, keeping the lease, runs again (woken by a signal)
    token = start(state, "wf-1")
    started = Commit(entries=[entry(1)], status="suspended", waiting=[], steps=child_steps("wf-1", 1))
    assert state.commit("wf-1", token, started).rerun
    # And child 1's result arrives while that pass runs
    child_id = finish_child(state, "wf-1", 1, Outcome(ok=True, value=3))
    assert state.deliver("wf-1", Trigger.result(1, child_id), None).locked
    # When the pass commits waiting on step 1
    committed = state.commit("wf-1", token, Commit(entries=[entry(2)], status="suspended", waiting=[1]))
    # Then it must run again at once, still holding the lease
    assert committed.ok and committed.rerun
    assert state.renew("wf-1", token)
    meta = state.get_meta("wf-1")
    assert meta is not None and meta.status == "running"
    assert state.commit("wf-1", token, Commit(entries=[], status="succeeded", outcome=Outcome(ok=True))).ok


def test_commit_waiting_on_unresolved_steps_suspends_and_releases(state: StateBackend) -> None:
    token = start(state, "wf-1")
    timers = Commit(entries=[entry(1)], status="suspended", waiting=[1, 2], steps=timer_steps(7.5, 1, 2))
    committed = state.commit("wf-1", token, timers)
    assert committed.ok and not committed.rerun
    meta = state.get_meta("wf-1")
    assert meta is not None and meta.status == "suspended"
    assert not state.renew("wf-1", token) and state.acquire("wf-1") is None
    assert state.timer_due("wf-1", 1) == 7.5 and state.timer_due("wf-1", 2) == 7.5


def test_commit_with_a_wrong_token_writes_nothing(state: StateBackend) -> None:
    start(state, "wf-1")
    bad = Commit(entries=[entry(1)], status="succeeded", outcome=Outcome(ok=True), data={"wf-1": {"k": '"v"'}})
    assert not state.commit("wf-1", "not-the-token", bad).ok
    meta, journal = state.load("wf-1", 0)
    assert meta is not None and meta.status == "running" and journal == []
    assert state.workflow_data("wf-1") == {}


def test_finished_commit_records_the_outcome_and_releases(state: StateBackend) -> None:
    token = start(state, "wf-1")
    error = ErrorInfo(type="ValueError", message="boom", traceback="tb")
    outcome = Outcome(ok=False, error=error, invocation_id="wf-1")
    assert state.commit("wf-1", token, Commit(entries=[entry(1)], status="failed", outcome=outcome)).ok
    meta = state.get_meta("wf-1")
    assert meta is not None and meta.status == "failed" and meta.outcome == outcome
    assert state.acquire("wf-1") is None and state.timer_due("wf-1", 1) is None


def test_commit_writes_workflow_data(state: StateBackend) -> None:
    token = start(state, "wf-1")
    data = {"wf-1": {"a": "1", "b": '{"x": [1, 2]}'}, "wf-1/3": {"c": '"child"'}}
    assert state.commit("wf-1", token, Commit(entries=[], status="suspended", waiting=[9], data=data)).ok
    assert state.workflow_data("wf-1") == data["wf-1"] and state.workflow_data("wf-1/3") == data["wf-1/3"]
    assert state.read_data("wf-1", "b") == (True, '{"x": [1, 2]}')
    assert state.read_data("wf-1", "missing") == (False, None) and state.workflow_data("other") == {}


def test_large_commit_is_applied_whole(state: StateBackend) -> None:
    # More values than one Lua unpack() takes: the script must send them in chunks.
    token = start(state, "wf-1")
    entries = [entry(i) for i in range(10_000)]
    data = {"wf-1": {f"k{i}": str(i) for i in range(5_001)}}
    assert state.commit("wf-1", token, Commit(entries=entries, status="suspended", waiting=[0], data=data)).ok
    assert state.load("wf-1", 0)[1] == entries and state.workflow_data("wf-1") == data["wf-1"]


# -- leases ---------------------------------------------------------------------------------
def test_commit_reports_where_the_passs_entries_landed(state: StateBackend) -> None:
    # Given a pass that saw an empty journal
    token = start(state, "wf-1")
    first = Commit(entries=[entry(1), entry(2)], status="suspended", waiting=[1], steps=child_steps("wf-1", 1))
    committed = state.commit("wf-1", token, first)
    # Then its entries start at 0: a cached snapshot of length 0 may fold them itself
    assert committed.ok and committed.appended_at == 0
    # And when a result arrived before the next pass's commit, its entries land after it
    child_id = finish_child(state, "wf-1", 1, Outcome(ok=True, value=1))
    token = state.deliver("wf-1", Trigger.result(1, child_id), None).token
    assert token is not None
    committed = state.commit("wf-1", token, Commit(entries=[entry(3)], status="suspended", waiting=[2], seen=2))
    assert committed.ok and committed.appended_at == 3


def test_a_granted_delivery_returns_the_journal_tail_with_the_lease(state: StateBackend) -> None:
    suspend_on(state, "wf-1", 1)
    child_id = finish_child(state, "wf-1", 1, Outcome(ok=True, value=7))
    delivery = state.deliver("wf-1", Trigger.result(1, child_id), None, load_from=1)
    assert delivery.token and not delivery.duplicate and delivery.loaded_from == 1
    assert untimed(delivery.entries) == [ResolvedEntry(n=1, o=Outcome(ok=True, value=7)).model_dump_json()]
    again = state.deliver("wf-1", Trigger.result(1, child_id), None)
    assert again.duplicate and again.locked and again.token is None


def test_finish_first_pass_creates_and_finishes_in_one_step(state: StateBackend) -> None:
    # Given a child's first pass that ran before its delivery and succeeded
    suspend_on(state, "wf-1", 1)
    rec = child_record("wf-1", 1)
    outcome = Outcome(ok=True, value={"n": 2**70}, invocation_id=rec.invocation_id)
    commit = Commit(entries=[], status="succeeded", outcome=outcome)
    # When it is delivered and committed at once
    delivery, committed, _ = state.finish_first_pass(rec.invocation_id, Trigger.start(), rec, commit)
    # Then the invocation exists, finished with that outcome, and its lease is free
    assert delivery.token and committed is not None and committed.ok
    meta = state.get_meta(rec.invocation_id)
    assert meta is not None and meta.status == "succeeded" and meta.outcome == outcome and meta.record == rec
    assert state.acquire(rec.invocation_id) is None
    # And a second copy of the start finds it finished and commits nothing
    again, committed, _ = state.finish_first_pass(rec.invocation_id, Trigger.start(), rec, commit)
    assert again.duplicate and again.token is None and committed is None


def test_finish_first_pass_commits_nothing_over_a_journal(state: StateBackend) -> None:
    # Given a child whose earlier attempt recorded a value, then lost its lease
    suspend_on(state, "wf-1", 1)
    rec = child_record("wf-1", 1)
    token = start(state, rec.invocation_id, rec)
    assert state.commit(rec.invocation_id, token, Commit(entries=[entry(1)], status="running", waiting=[5])).ok
    assert state.acquire(rec.invocation_id) is None  # it waits on step 5
    # When a copy of its start runs a first pass on the empty state it assumed
    commit = Commit(entries=[], status="succeeded", outcome=Outcome(ok=True, value=1))
    delivery, committed, _ = state.finish_first_pass(rec.invocation_id, Trigger.start(), rec, commit)
    # Then nothing is committed: the journal is not the empty one
    assert committed is None and delivery.duplicate
    meta, journal = state.load(rec.invocation_id, 0)
    assert meta is not None and meta.status == "suspended" and journal == [entry(1)]


def test_finish_first_pass_then_delivers_the_leafs_result_to_its_parent(state: StateBackend) -> None:
    # Given a parent waiting on step 1, and its leaf's first pass that succeeded
    suspend_on(state, "wf-1", 1)
    rec = child_record("wf-1", 1)
    commit = Commit(entries=[], status="succeeded", outcome=Outcome(ok=True, value=5, invocation_id=rec.invocation_id))
    then = Then("wf-1", Trigger.result(1, rec.invocation_id), load_from=1)
    # When the leaf is recorded and its result delivered in one call
    _, committed, parent = state.finish_first_pass(rec.invocation_id, Trigger.start(), rec, commit, then)
    # Then the parent's delivery found the outcome just recorded, with the lease and the tail
    assert committed is not None and committed.ok and parent is not None
    assert parent.token and parent.loaded_from == 1
    assert untimed(parent.entries) == [ResolvedEntry(n=1, o=commit.outcome).model_dump_json()]  # type: ignore[arg-type]
    # And a second copy (a duplicate start) commits nothing and delivers nothing
    _, again, none = state.finish_first_pass(rec.invocation_id, Trigger.start(), rec, commit, then)
    assert again is None and none is None
    assert state.load("wf-1", 1)[1] == list(parent.entries)


def test_empty_only_commit_is_stale_over_a_journal(state: StateBackend) -> None:
    token = start(state, "wf-1")
    assert state.commit("wf-1", token, Commit(entries=[entry(1)], status="running", waiting=[])).rerun
    first_pass = Commit(entries=[], status="succeeded", outcome=Outcome(ok=True), empty_only=True)
    stale = state.commit("wf-1", token, first_pass)
    assert (stale.ok, stale.rerun) == (False, True)
    meta = state.get_meta("wf-1")
    assert meta is not None and meta.status == "running"


def test_a_finished_root_is_announced_to_its_waiters(make_redis: MakeState) -> None:
    # Given a subscriber to the root's meta key (what Invocation.wait subscribes to)
    state = make_redis()
    assert isinstance(state, RedisState)
    pubsub = state.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(state.keys.meta("wf-1"))
    try:
        # When the root finishes
        token = start(state, "wf-1")
        assert state.commit("wf-1", token, Commit(entries=[], status="succeeded", outcome=Outcome(ok=True))).ok
        # Then its end is published there (no waiter has to poll)
        message = None
        deadline = time.monotonic() + 5
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
        assert message is not None and message["data"] == "succeeded"
        meta = state.wait_finished("wf-1", timeout=1)
        assert meta is not None and meta.status == "succeeded"
    finally:
        pubsub.close()


def test_waiting_for_an_unfinished_root_times_out_with_its_status(state: StateBackend) -> None:
    start(state, "wf-1")
    meta = state.wait_finished("wf-1", timeout=0.3)
    assert meta is not None and meta.status == "running"
    assert state.wait_finished("never-started", timeout=0.1) is None


def test_a_parent_needs_a_childs_result_again_while_it_is_active(state: StateBackend) -> None:
    # Waiting for step 1, after it resolved, and suspended on a later step: all active
    suspend_on(state, "wf-1", 1)
    assert state.needs_result("wf-1")
    child_id = finish_child(state, "wf-1", 1, Outcome(ok=True, value=1))
    token = state.deliver("wf-1", Trigger.result(1, child_id), None).token
    assert token is not None and state.needs_result("wf-1")
    second = Commit(entries=[entry(2)], status="suspended", waiting=[2], seen=2, steps=child_steps("wf-1", 2))
    assert state.commit("wf-1", token, second).ok
    assert state.needs_result("wf-1")
    # Finished: never again
    child_id = finish_child(state, "wf-1", 2, Outcome(ok=True, value=2))
    token = state.deliver("wf-1", Trigger.result(2, child_id), None).token
    assert token is not None
    assert state.commit("wf-1", token, Commit(entries=[], status="succeeded", outcome=Outcome(ok=True))).ok
    assert not state.needs_result("wf-1") and not state.needs_result("ghost")


def test_lease_expires_unless_renewed(make_state: MakeState) -> None:
    state = make_state(lease_ms=150)
    token = start(state, "wf-1")
    time.sleep(0.1)
    assert state.renew("wf-1", token)  # renewed: still held 100 ms into a 150 ms lease
    time.sleep(0.1)
    assert state.deliver("wf-1", Trigger.start(), record("wf-1")).locked
    time.sleep(0.2)
    assert not state.renew("wf-1", token)
    assert not state.commit("wf-1", token, Commit(entries=[entry(1)], status="suspended", waiting=[0])).ok
    assert state.load("wf-1", 0)[1] == []
    assert state.acquire("wf-1") not in (None, token)


def test_release_needs_the_owner_token(state: StateBackend) -> None:
    token = start(state, "wf-1")
    state.release("wf-1", "someone-else")
    assert state.acquire("wf-1") is None
    state.release("wf-1", token)
    assert state.acquire("wf-1") is not None


# -- reads ----------------------------------------------------------------------------------
def test_load_from_an_index_returns_only_the_tail(state: StateBackend) -> None:
    token = start(state, "wf-1")
    entries = [entry(i) for i in range(5)]
    assert state.commit("wf-1", token, Commit(entries=entries, status="suspended", waiting=[0])).ok
    meta, tail = state.load("wf-1", 3)
    assert meta is not None and meta.status == "suspended" and tail == entries[3:]
    assert state.load("wf-1", 5)[1] == [] and state.load("wf-1", 0)[1] == entries


def test_timer_due_and_existing(state: StateBackend) -> None:
    assert state.timer_due("wf-1", 1) is None and state.existing([]) == []
    token = start(state, "wf-1")
    steps = {**timer_steps(0.25, 1), **child_steps("wf-1", 2)}
    assert state.commit("wf-1", token, Commit(entries=[], status="suspended", waiting=[1, 2], steps=steps)).ok
    # A timer step reports its due time until resolved; a child step is not a timer
    assert state.timer_due("wf-1", 1) == 0.25 and state.timer_due("wf-1", 2) is None
    state.deliver("wf-1", Trigger.timer(1, 0.25), None)
    assert state.timer_due("wf-1", 1) is None
    child_id = finish_child(state, "wf-1", 2, Outcome(ok=True, value=1))
    assert state.existing(["wf-1", child_id, "wf-1/3", "elsewhere"]) == [True, True, False, False]


def test_wait_finished(state: StateBackend) -> None:
    assert state.wait_finished("wf-1", timeout=0.05) is None
    token = start(state, "wf-1")
    pending = state.wait_finished("wf-1", timeout=0.05)
    assert pending is not None and pending.status == "running"
    finish = Commit(entries=[], status="succeeded", outcome=Outcome(ok=True, value=7))
    threading.Timer(0.1, state.commit, ("wf-1", token, finish)).start()
    began = time.monotonic()
    meta = state.wait_finished("wf-1", timeout=5)
    assert meta is not None and meta.status == "succeeded" and meta.outcome == Outcome(ok=True, value=7)
    assert time.monotonic() - began < 1


# -- Redis only: retention, key layout, connection errors ------------------------------------
def _ttls(state: RedisState, root: str) -> dict[str, int]:
    pattern = f"{state.keys.tag(root)}:*:{root}*"  # the tree's keys, not its shard's index
    return {key: state.client.ttl(key) for key in state.client.scan_iter(match=pattern)}


def test_a_finished_root_gives_every_key_of_its_tree_the_retention(make_redis: MakeState) -> None:
    state = make_redis(retention=120)
    assert isinstance(state, RedisState)
    token = start(state, "wf-1")
    data = {"wf-1": {"a": "1"}}
    steps = child_steps("wf-1", 1)
    assert state.commit(
        "wf-1", token, Commit(entries=[entry(1)], status="suspended", waiting=[1], data=data, steps=steps)
    ).ok
    child_id = finish_child(state, "wf-1", 1, Outcome(ok=True, value=1))
    assert all(ttl == -1 for ttl in _ttls(state, "wf-1").values())  # a child finishing starts no clock
    resumed = state.deliver("wf-1", Trigger.result(1, child_id), None).token
    assert resumed is not None
    finish = Commit(entries=[], status="succeeded", outcome=Outcome(ok=True), steps=child_steps("wf-1", 5))
    assert state.commit("wf-1", resumed, finish).ok
    ttls = _ttls(state, "wf-1")
    assert len(ttls) >= 8 and all(0 < ttl <= 120 for ttl in ttls.values()), ttls
    # A key written after the root finished (a fire-and-forget child of its last pass) inherits
    # the retention instead of living forever.
    late = start(state, "wf-1/5", child_record("wf-1", 5))
    assert state.commit("wf-1/5", late, Commit(entries=[entry(2)], status="suspended", waiting=[0])).ok
    assert all(0 < ttl <= 120 for ttl in _ttls(state, "wf-1").values())


def test_every_key_stays_under_the_prefix_and_the_shards_hash_tag(make_redis: MakeState) -> None:
    state = make_redis()
    assert isinstance(state, RedisState)
    root = f"prefix-check-{uuid.uuid4().hex}"
    suspend_on(state, root, 1)
    finish_child(state, root, 1, Outcome(ok=True, value=1))
    state.deliver(root, Trigger.result(1, f"{root}/1"), None)
    state.deliver(f"{root}/9", Trigger.timer(1, 0.0), None)  # marks it lost, under the root's tag
    keys = list(state.client.scan_iter(match=f"*{root}*"))
    assert keys and all(key.startswith(f"{state.keys.tag(root)}:") for key in keys), keys
    index = state.keys.index(state.keys.shard_of(root))  # the index the root is listed in
    assert len({key_slot(key.encode()) for key in [*keys, index]}) == 1


def test_keys_of_one_tree_share_a_cluster_slot() -> None:
    keys = Keys("encore")
    ids = ["order-A-1", "order-A-1/0", "order-A-1/0/4", "order-A-1/12"]
    names = [keys.registry(ids[0])] + [keys.data(i) for i in ids]
    names += [name for i in ids for name in dataclasses.astuple(keys.invocation(i))]
    shard = keys.shard_of(ids[0])
    names += [keys.index(shard), keys.index(shard, "failed", "orders.place")]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(name.startswith(f"encore:{{s{shard}}}:") for name in names)


def test_cluster_is_detected_from_the_url(cluster_url: str) -> None:
    state = RedisState.from_url(cluster_url)
    try:
        assert isinstance(state.client, RedisCluster)
    finally:
        state.close()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_redis_is_a_configuration_error_without_the_password() -> None:
    url = f"redis://user:s3cret-pw@127.0.0.1:{_dead_port()}/0"
    with pytest.raises(ConfigurationError) as probing:
        RedisState.from_url(url)
    lazy = RedisState.from_url(url, cluster=False)  # no probe: the first command reports it
    with pytest.raises(ConfigurationError) as first_command:
        lazy.get_meta("wf-1")
    for error in (probing.value, first_command.value):
        message = str(error)
        assert "s3cret-pw" not in message and "127.0.0.1" in message and "ENCORE_STATE_URL" in message
        assert error.__cause__ is None and error.__suppress_context__
    assert "s3cret-pw" not in lazy.describe() and lazy.describe().startswith("redis://user:***@127.0.0.1")
