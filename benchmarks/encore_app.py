"""The measured side: a sequential workflow of no-op steps on RabbitMQ and Redis.

Parent and children share a queue (so the worker that runs a child resumes its parent in
place); BENCH_SPLIT_QUEUES=1 puts the children on a queue of their own, so every result
travels as a message.
"""

from __future__ import annotations

import os

from dramatiq_encore import Encore

app = Encore()  # ENCORE_BROKER_URL / ENCORE_STATE_URL, every shipped durability default on
CHILD_QUEUE = "bench_encore_children" if os.environ.get("BENCH_SPLIT_QUEUES") == "1" else "bench_encore"


@app.task(queue_name=CHILD_QUEUE)
def noop(i: int) -> int:
    return i


@app.task(queue_name="bench_encore")
def sequential(steps: int) -> int:
    total = 0
    for i in range(steps):
        total += sequential.wf.execute_task(noop, i).result
    return total
