"""State loss is loud: a Redis that restarts empty under suspended workflows.

A scratch Redis without persistence (and with a password) holds the state of workflows
suspended on a timer, on a running child and on a signal; it is restarted empty. Every
message that then names one of them marks it lost, so its status reads ``lost`` and
``wait()`` raises StateLost; nothing writes a key without a TTL; while Redis is down every
public call raises StateUnavailable naming the store without its password.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dramatiq_encore.errors import StateLost, StateUnavailable
from dramatiq_encore.state import RedisState
from tests.conftest import Harness, running_harness
from tests.support.forge import dead_lettered, forge
from tests.support.scratch_redis import ScratchRedis, scratch_redis
from tests.support.waiting import wait_until

pytestmark = pytest.mark.realservices
PASSWORD = "Sl-" + uuid.uuid4().hex[:10]
WAIT = 30


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ScratchRedis]:
    with scratch_redis(tmp_path, PASSWORD) as redis_server:
        yield redis_server


@pytest.fixture
def harness(server: ScratchRedis) -> Iterator[Harness]:
    with running_harness("redis", state_url=server.url) as h:
        yield h


def _declare(harness: Harness, child_done: threading.Event) -> dict[str, Any]:
    app = harness.app

    @app.task(max_retries=0)
    def slow_child(seconds: float) -> str:
        time.sleep(seconds)
        child_done.set()
        return "done"

    @app.task
    def on_timer() -> str:
        on_timer.wf.set_data("before", 1)
        on_timer.wf.sleep(2.0)
        return "woke"

    @app.task
    def on_child() -> str:
        return on_child.wf.execute_task(slow_child, 2.5).result

    @app.task
    def on_signal() -> Any:
        return on_signal.wf.wait_for_signal("go")

    harness.start()
    return {"timer": on_timer, "child": on_child, "signal": on_signal}


def _unavailable(call: Any) -> StateUnavailable:
    with pytest.raises(StateUnavailable) as err:
        call()
    return err.value


def test_a_redis_restarted_empty_under_suspended_workflows_is_loud(
    harness: Harness, server: ScratchRedis, caplog: pytest.LogCaptureFixture
) -> None:
    app, child_done = harness.app, threading.Event()
    tasks = _declare(harness, child_done)
    # Given workflows suspended on a timer, on a running child and on a signal
    handles = {kind: task.send() for kind, task in tasks.items()}
    for inv in handles.values():
        assert wait_until(lambda inv=inv: inv.status == "suspended", timeout=WAIT)
    # When Redis stops: every public call says the store is unavailable, naming it
    server.stop()
    errors = [
        _unavailable(lambda: handles["timer"].status),
        _unavailable(lambda: handles["timer"].wait(timeout=1)),
        _unavailable(lambda: app.get_workflow_data(handles["timer"].invocation_id)),
        _unavailable(lambda: app.signal(handles["signal"].invocation_id, "go", 1)),
        _unavailable(lambda: app.cancel(handles["signal"].invocation_id)),
        _unavailable(lambda: tasks["signal"].send_with_options(workflow_id="a-new-one")),
    ]
    for error in errors:
        assert f"127.0.0.1:{server.port}" in str(error) and PASSWORD not in str(error)
    # And it comes back empty
    server.start()
    # Then the timer, and the child's delivery, mark their workflows lost
    with caplog.at_level(logging.ERROR):
        for kind in ("timer", "child"):
            with pytest.raises(StateLost) as lost:
                handles[kind].wait(timeout=WAIT)
            assert "appendonly" in str(lost.value) and handles[kind].status == "lost", str(lost.value)
    assert wait_until(child_done.is_set, timeout=WAIT)  # a body that runs still ends (at least once)
    # And a signal for the third (a plain message, after its re-sends) marks it lost too
    assert wait_until(lambda: dead_lettered(harness) == 2, timeout=WAIT)  # the timer and the child's start
    before = dead_lettered(harness)
    workflow_id = handles["signal"].invocation_id
    forge(harness, "on_signal", {"kind": "signal", "invocation_id": workflow_id, "name": "go"}, nudges=20)
    assert wait_until(lambda: handles["signal"].status == "lost", timeout=WAIT)
    with pytest.raises(StateLost):
        app.signal(workflow_id, "go", 2)
    assert wait_until(lambda: dead_lettered(harness) == before + 1, timeout=WAIT)  # after the timer and the start
    # And every key written since has a TTL: no orphan lives forever
    assert isinstance(app.state, RedisState)
    keys = list(app.state.client.scan_iter(match="*"))
    assert keys and all(app.state.client.ttl(key) > 0 for key in keys), {k: app.state.client.ttl(k) for k in keys}
    assert "marked lost" in caplog.text


def test_a_redis_that_can_lose_state_is_warned_about_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        with scratch_redis(tmp_path / "bare", PASSWORD) as bare:
            for _ in range(2):
                RedisState.from_url(bare.url).close()
        with scratch_redis(tmp_path / "durable", PASSWORD, "--appendonly", "yes", "--appendfsync", "everysec",
                           "--maxmemory-policy", "noeviction") as durable:
            RedisState.from_url(durable.url).close()
        with scratch_redis(tmp_path / "evicting", PASSWORD, "--appendonly", "yes", "--maxmemory-policy",
                           "allkeys-lru") as evicting:
            RedisState.from_url(evicting.url).close()
    warnings = [r.getMessage() for r in caplog.records if "can lose workflow state" in r.getMessage()]
    assert len([w for w in warnings if f":{bare.port}/" in w]) == 1
    assert "keeps nothing on disk" in warnings[0] and PASSWORD not in warnings[0]
    assert not [w for w in warnings if f":{durable.port}/" in w]
    assert [w for w in warnings if f":{evicting.port}/" in w and "allkeys-lru" in w]
