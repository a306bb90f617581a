"""The testing kit runs async tasks too: an async workflow that sleeps three days, skipped."""

from __future__ import annotations

import asyncio
import time

from dramatiq_encore import Encore
from dramatiq_encore.testing import run_workflow

app = Encore()


@app.task
async def double(n: int) -> int:
    await asyncio.sleep(0.01)
    return n * 2


@app.task
async def slow_flow(n: int) -> int:
    wf = slow_flow.wf
    first = wf.execute_task(double, n).result
    wf.sleep(3 * 86_400)
    return first + wf.execute_task(double, 1).result


def test_an_async_workflow_sleeping_three_days_runs_in_the_kit_with_skip_time() -> None:
    started = time.perf_counter()
    assert run_workflow(slow_flow, 5, skip_time=True, timeout=20) == 12
    assert time.perf_counter() - started < 10
