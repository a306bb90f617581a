"""The snapshot cache is a cache: the same values with it and without it, and bounded.

Both backend pairs. A workflow id seeds the deterministic streams, so the same id run by two
apps (one caching snapshots, one loading the whole journal at every pass) must record the
same journal entry for entry.
"""

from __future__ import annotations

import json
from typing import Any

from dramatiq_encore.actors.cache import SnapshotCache
from tests.conftest import Harness, running_harness
from tests.support.waiting import wait_until

WAIT = 30


def _declare(harness: Harness) -> Any:
    app = harness.app

    @app.task
    def leaf(i: int) -> dict[str, Any]:
        return {"i": i, "token": leaf.wf.uuid()}

    @app.task
    def flow(n: int) -> dict[str, Any]:
        wf = flow.wf
        seen: list[Any] = []
        for i in range(n):
            seen.append([wf.random(), wf.uuid(), wf.side_effect("tick", lambda i=i: i * 10)])
            seen.append(wf.execute_task(leaf, i).result)
            wf.set_data(f"k{i}", i)
            seen.append(wf.get_data(f"k{i}"))
        return {"seen": seen}

    harness.start()
    return flow


def _journal(harness: Harness, workflow_id: str) -> list[dict[str, Any]]:
    """Every entry of the workflow's journals, but the queue names (each test app has its own)
    and the times recorded for operators (``t``)."""
    state = harness.app.state
    entries = [json.loads(e) for e in state.load(workflow_id, 0)[1]]
    for n in range(1, 100):  # the children's journals too (their uuids)
        child = state.load(f"{workflow_id}/{n}", 0)[1]
        if not child and state.get_meta(f"{workflow_id}/{n}") is None:
            break
        entries += [json.loads(e) for e in child]
    return [{k: v for k, v in entry.items() if k not in ("queue", "t")} for entry in entries]


def test_the_same_workflow_records_the_same_values_with_and_without_the_cache(harness: Harness) -> None:
    cached = _declare(harness)
    with running_harness(harness.kind) as other:
        other.app.runtime.cache = SnapshotCache(0)  # every pass loads the whole journal
        uncached = _declare(other)
        results = [task.send_with_options(args=(6,), workflow_id="cache-check").wait(timeout=WAIT)
                   for task in (cached, uncached)]
        assert results[0] == results[1]
        assert _journal(harness, "cache-check") == _journal(other, "cache-check")


def test_the_cache_holds_at_most_its_size(harness: Harness) -> None:
    app = harness.app
    app.runtime.cache = SnapshotCache(3)

    @app.task
    def waiter(i: int) -> Any:
        return [i, waiter.wf.wait_for_signal("go")]

    harness.start()
    started = [waiter.send(i) for i in range(10)]
    for inv in started:
        assert wait_until(lambda inv=inv: inv.status == "suspended", timeout=WAIT)
    assert len(app.runtime.cache._snapshots) <= 3
    for inv in started:
        app.signal(inv.invocation_id, "go", "on")
    assert [inv.wait(timeout=WAIT) for inv in started] == [[i, "on"] for i in range(10)]
