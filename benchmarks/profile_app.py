"""A sequential workflow of no-op steps, for ``benchmarks/profile_step.py``."""

from __future__ import annotations

from dramatiq_encore import Encore

app = Encore()


@app.task(queue_name="bench_profile")
def profiled_noop(i: int) -> int:
    return i


@app.task(queue_name="bench_profile")
def profiled_sequential(steps: int) -> int:
    total = 0
    for i in range(steps):
        total += profiled_sequential.wf.execute_task(profiled_noop, i).result
    return total
