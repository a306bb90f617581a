"""The measured side: a sequential workflow of no-op steps on RabbitMQ and Redis."""

from __future__ import annotations

from dramatiq_encore import Encore

app = Encore()  # ENCORE_BROKER_URL / ENCORE_STATE_URL, every shipped durability default on


@app.task(queue_name="bench_encore")
def noop(i: int) -> int:
    return i


@app.task(queue_name="bench_encore")
def sequential(steps: int) -> int:
    total = 0
    for i in range(steps):
        total += sequential.wf.execute_task(noop, i).result
    return total
