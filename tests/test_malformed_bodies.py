"""No body halts a queue or kills a worker thread: each is dead-lettered at once, with its reason.

Only a real broker receives bytes from outside, so these run on RabbitMQ + Redis.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import Harness
from tests.support.bad_bodies import bad_bodies
from tests.support.rabbit import dead_letter_bodies, publish
from tests.support.services import amqp_url
from tests.support.waiting import wait_until

pytestmark = pytest.mark.realservices


def _declare(harness: Harness) -> Any:
    app = harness.app

    @app.task(max_retries=0)
    def leaf(text: str) -> str:
        return text.upper()

    @app.task
    def flow(text: str) -> str:
        return flow.wf.execute_task(leaf, text).result

    harness.start()
    return flow


def test_every_malformed_body_is_dead_lettered_at_once_and_the_worker_keeps_all_its_threads(
    real_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    flow = _declare(real_harness)
    url, queue = amqp_url(), real_harness.app.default_queue
    assert url is not None
    cases = bad_bodies(queue, "flow")
    worker = real_harness.worker
    threads = [*worker.workers, *worker.consumers.values()]
    # Given a worker that serves workflows
    assert flow.send("before").wait(timeout=20) == "BEFORE"
    with caplog.at_level(logging.ERROR):
        # When every malformed body is published to its queue
        for raw, _ in cases.values():
            publish(url, queue, raw)
        # Then each one reaches the dead-letter queue once, without retries
        assert wait_until(lambda: len(dead_letter_bodies(url, queue)) == len(cases), timeout=30)
        assert sorted(dead_letter_bodies(url, queue)) == sorted(raw for raw, _ in cases.values())
        # And workflows on the same worker still complete
        started = [flow.send(f"after-{n}") for n in range(10)]
        assert [inv.wait(timeout=30) for inv in started] == [f"AFTER-{n}" for n in range(10)]
    # And no worker or consumer thread died
    assert all(thread.is_alive() for thread in threads)
    assert len(worker.workers) == 8
    # And each body's reason was logged
    for name, (_, reason) in cases.items():
        assert reason in caplog.text, f"{name}: {reason!r} not logged"
