"""The lease keeper: renews what is held, drops only its own token, reports only real losses."""

from __future__ import annotations

import logging
import time

import pytest

from dramatiq_encore.actors.leases import LeaseKeeper
from dramatiq_encore.identity import WorkflowIdentity
from dramatiq_encore.state import Commit, MemoryState, Trigger
from dramatiq_encore.state.models import InvocationRecord

LOST = "lost the lease"


def _held(state: MemoryState, invocation_id: str) -> str:
    record = InvocationRecord(invocation_id=invocation_id, task="t", queue="q", digest="d", seed="s",
                              identity=WorkflowIdentity.root(invocation_id, "t"))
    token = state.deliver(invocation_id, Trigger.start(), record).token
    assert token is not None
    return token


def test_a_drop_removes_only_its_own_token() -> None:
    keeper = LeaseKeeper(MemoryState(), background=False)
    keeper.hold("wf", "first")
    keeper.hold("wf", "second")  # the next pass of the same invocation, in another thread
    keeper.drop("wf", "first")
    assert keeper.held("wf") == "second"
    keeper.drop("wf", None)
    keeper.drop("wf", "second")
    assert keeper.held("wf") is None


def test_a_lease_released_by_its_commit_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    # Given a held lease whose pass committed (releasing it) just before the renewal
    state = MemoryState()
    keeper = LeaseKeeper(state, background=False)
    token = _held(state, "wf")
    keeper.hold("wf", token)
    assert state.commit("wf", token, Commit(entries=[], status="suspended", signals=["go"])).ok
    with caplog.at_level(logging.WARNING):
        keeper.renew_all()  # the renewal fails: the commit released the lease
        keeper.drop("wf", token)  # the holder drops it right after its commit returned
        keeper.renew_all()
    assert LOST not in caplog.text


def test_a_lease_lost_while_still_held_is_reported_once_confirmed(caplog: pytest.LogCaptureFixture) -> None:
    state = MemoryState(lease_ms=50)
    keeper = LeaseKeeper(state, background=False)
    token = _held(state, "wf")
    keeper.hold("wf", token)
    time.sleep(0.1)  # the pass outlives its lease
    with caplog.at_level(logging.WARNING):
        keeper.renew_all()
        assert LOST not in caplog.text  # one failure may be a commit racing the renewal
        keeper.renew_all()
    assert caplog.text.count(LOST) == 1 and "wf" in caplog.text
