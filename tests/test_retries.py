"""Dramatiq's own retry and time-limit options, on workflow steps."""

from __future__ import annotations

import itertools
import threading
import time

from dramatiq_encore import TaskError
from tests.conftest import Harness

WAIT = 20


def test_time_limit_fails_a_slow_step_with_time_limit_exceeded(harness: Harness) -> None:
    app = harness.app

    @app.task(time_limit=200, max_retries=0)
    def slow() -> str:
        for _ in range(500):  # short sleeps: dramatiq's interrupt lands between them
            time.sleep(0.01)
        return "done"

    @app.task
    def parent() -> str:
        try:
            parent.wf.execute_task(slow)
        except TaskError as exc:
            return exc.error_type
        return "no error"

    harness.start()
    assert parent.send().wait(timeout=WAIT) == "TimeLimitExceeded"


def test_a_step_is_retried_with_backoff_until_it_succeeds(harness: Harness) -> None:
    app = harness.app
    attempts: list[float] = []
    lock = threading.Lock()

    @app.task(max_retries=3, min_backoff=100, max_backoff=200)
    def flaky() -> int:
        with lock:
            attempts.append(time.monotonic())
            if len(attempts) < 3:
                raise ConnectionError("partner API down")
        return len(attempts)

    @app.task
    def parent() -> int:
        return int(parent.wf.execute_task(flaky).result)

    harness.start()
    # The step fails twice, is retried by dramatiq's Retries middleware, and the parent
    # sees only the successful attempt's result.
    assert parent.send().wait(timeout=WAIT) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.09 for gap in gaps), gaps  # at least min_backoff between attempts
