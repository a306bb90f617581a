"""The state backends under test: one fixture per kind, and the helpers that build a tree.

``state`` / ``make_state`` are parametrised over MemoryState (the reference), RedisState on
the local Redis and RedisState on a throwaway 3-node Redis Cluster; ``make_redis`` over the
two Redis kinds. Each Redis state uses a fresh key prefix whose keys are deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from dramatiq_encore.identity import WorkflowIdentity, child_invocation_id, root_of
from dramatiq_encore.state import Commit, MemoryState, RedisState, StateBackend, Trigger
from dramatiq_encore.state.models import InvocationRecord, Outcome, ParentRef, ValueEntry
from tests.support.services import redis_url

MakeState = Callable[..., StateBackend]
REDIS_KINDS = [pytest.param("redis", marks=pytest.mark.realservices), "cluster"]


# -- fixtures (registered by tests/conftest.py; ``cluster_url`` is the session's) ----------------
def _url(kind: str, request: pytest.FixtureRequest) -> str:
    if kind == "cluster":
        return str(request.getfixturevalue("cluster_url"))
    url = redis_url()
    if url is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true and Redis is not available", pytrace=False)
        pytest.skip("Redis not available: set ENCORE_TEST_REDIS_URL or start it on localhost")
    return url


def _factory(kind: str, request: pytest.FixtureRequest) -> Iterator[MakeState]:
    made: list[StateBackend] = []
    prefix = f"encore-contract-{uuid.uuid4().hex[:10]}"

    def make(lease_ms: int = 5_000, retention: int = 3_600) -> StateBackend:
        state: StateBackend
        if kind == "memory":
            state = MemoryState(lease_ms=lease_ms)
        else:
            state = RedisState.from_url(_url(kind, request), prefix=prefix, lease_ms=lease_ms, retention=retention)
        made.append(state)
        return state

    yield make
    for state in made:
        if isinstance(state, RedisState):
            for key in list(state.client.scan_iter(match=f"{prefix}:*")):
                state.client.delete(key)  # one by one: keys of several roots live in several slots
        state.close()


@pytest.fixture(params=["memory", *REDIS_KINDS])
def make_state(request: pytest.FixtureRequest) -> Iterator[MakeState]:
    yield from _factory(request.param, request)


@pytest.fixture(params=REDIS_KINDS)
def make_redis(request: pytest.FixtureRequest) -> Iterator[MakeState]:
    yield from _factory(request.param, request)


@pytest.fixture
def state(make_state: MakeState) -> StateBackend:
    return make_state()


# -- helpers --------------------------------------------------------------------------------
def record(invocation_id: str, digest: str = "d0", parent: ParentRef | None = None) -> InvocationRecord:
    identity = WorkflowIdentity.root(root_of(invocation_id), "flow")
    return InvocationRecord(
        invocation_id=invocation_id,
        task="flow",
        queue="default",
        identity=identity,
        args=[1, "a"],
        kwargs={"big": 2**70},
        digest=digest,
        seed=f"seed-{invocation_id}",
        parent=parent,
    )


def child_record(parent_id: str, step: int) -> InvocationRecord:
    parent = ParentRef(invocation_id=parent_id, task="flow", queue="default", step=step)
    return record(child_invocation_id(parent_id, step), digest=f"child-{step}", parent=parent)


def entry(value: object) -> str:
    return ValueEntry(k="random", v=value).model_dump_json()


def start(state: StateBackend, invocation_id: str, rec: InvocationRecord | None = None) -> str:
    delivery = state.deliver(invocation_id, Trigger.start(), rec or record(invocation_id))
    assert delivery.token is not None, delivery
    return delivery.token


def child_steps(parent_id: str, *steps: int) -> dict[int, str]:
    """What a parent's pass records for the child steps it starts (see ``step_record``)."""
    return {n: "c:" + child_record(parent_id, n).fingerprint for n in steps}


def timer_steps(due: float, *steps: int) -> dict[int, str]:
    return {n: f"t:{due!r}" for n in steps}


def finish_child(state: StateBackend, parent_id: str, step: int, outcome: Outcome) -> str:
    child_id = child_invocation_id(parent_id, step)
    token = start(state, child_id, child_record(parent_id, step))
    status = "succeeded" if outcome.ok else "failed"
    assert state.commit(child_id, token, Commit(entries=[], status=status, outcome=outcome)).ok
    return child_id


def suspend_on(state: StateBackend, invocation_id: str, *steps: int) -> None:
    """A root whose first pass started children at ``steps`` and waits on them."""
    token = start(state, invocation_id)
    commit = Commit(
        entries=[entry(0.5)], status="suspended", waiting=list(steps), steps=child_steps(invocation_id, *steps)
    )
    committed = state.commit(invocation_id, token, commit)
    assert committed.ok and not committed.rerun


def untimed(entries: list[str] | tuple[str, ...] | None) -> list[str]:
    """Journal entries without the time the store stamped on resolutions (``t``)."""
    from dramatiq_encore.state.models import ResolvedEntry, journal_entry

    out = []
    for text in entries or ():
        entry = journal_entry.validate_json(text)
        out.append(entry.model_copy(update={"t": None}).model_dump_json() if isinstance(entry, ResolvedEntry) else text)
    return out
