"""Malformed bodies against real `dramatiq` worker processes: dead-lettered, no thread dies."""

from __future__ import annotations

import os
import subprocess
from types import ModuleType

import pytest

from tests.integration.workers import WorkerProcess, wait_until
from tests.support.bad_bodies import bad_bodies
from tests.support.rabbit import dead_letters, publish

pytestmark = pytest.mark.realservices


def _worker_pids(group: list[WorkerProcess]) -> list[int]:
    """The forked worker processes (the `dramatiq` parent only supervises them)."""
    pids: list[int] = []
    for worker in group:
        assert worker.proc is not None
        out = subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True).stdout
        pids += [int(pid) for pid in out.split()]
    return pids


def _threads(pids: list[int]) -> dict[int, int]:
    return {pid: len(os.listdir(f"/proc/{pid}/task")) for pid in pids}


def _serve(wf_app: ModuleType, tag: str, count: int = 60) -> None:
    """Workflows at once: every worker thread and every lazily started helper thread runs."""
    started = [wf_app.order_workflow.send(f"{tag}-{n}") for n in range(count)]
    assert [inv.wait(timeout=60)["order_id"] for inv in started] == [f"{tag}-{n}" for n in range(count)]


def test_malformed_bodies_leave_every_worker_thread_serving(
    it_env: dict[str, str], wf_app: ModuleType, workers: list[WorkerProcess]
) -> None:
    url, queue = it_env["ENCORE_BROKER_URL"], it_env["ENCORE_TEST_QUEUE"]
    cases = bad_bodies(queue, "order_workflow")
    # Given two worker processes that serve workflows (each thread has started)
    _serve(wf_app, "warm")
    pids = _worker_pids(workers)
    assert len(pids) == 2
    before, dead = _threads(pids), dead_letters(url, queue)
    # When every malformed body is published, ten times over
    for _ in range(10):
        for raw, _reason in cases.values():
            publish(url, queue, raw)
    # Then all of them are dead-lettered
    assert wait_until(lambda: dead_letters(url, queue) == dead + 10 * len(cases), timeout=60)
    # And both processes still serve workflows with every thread they had
    _serve(wf_app, "after")
    assert _threads(pids) == before
    logs = "".join(w.log.read_text(errors="replace") for w in workers)
    for crash in ("Consumer encountered", "Unhandled error during post_process_message", "Exception in thread"):
        assert crash not in logs
