"""The measured side: sequential workflows of no-op steps on RabbitMQ and Redis.

Parent and children share a queue (so the worker that runs a child resumes its parent in
place). Two copies of the workflow on two queues: ``bench_encore`` for workers with the
fast paths on, ``bench_encore_plain`` for workers started with ENCORE_FAST_PATH=0.
BENCH_SPLIT_QUEUES=1 puts the children on a queue of their own, so every result travels as
a message.
"""

from __future__ import annotations

import os
from typing import Any

from dramatiq_encore import Encore

app = Encore()  # ENCORE_BROKER_URL / ENCORE_STATE_URL, every shipped durability default on
SPLIT = os.environ.get("BENCH_SPLIT_QUEUES") == "1"
QUEUES = {"encore": "bench_encore", "plain": "bench_encore_plain"}


def _pair(kind: str) -> Any:
    queue = QUEUES[kind]

    @app.task(queue_name=f"{queue}_children" if SPLIT else queue, actor_name=f"{queue}_noop")
    def noop(i: int) -> int:
        return i

    @app.task(queue_name=queue, actor_name=f"{queue}_sequential")
    def sequential(steps: int) -> int:
        total = 0
        for i in range(steps):
            total += sequential.wf.execute_task(noop, i).result
        return total

    @app.task(queue_name=queue, actor_name=f"{queue}_fan_out")
    def fan_out(n: int) -> int:
        handles = [fan_out.wf.start_task(noop, i) for i in range(n)]
        return sum(inv.result for inv in fan_out.wf.gather(*handles))

    @app.task(queue_name=queue, actor_name=f"{queue}_then_sleep")
    def then_sleep(steps: int, seconds: float) -> int:
        total = sum(then_sleep.wf.execute_task(noop, i).result for i in range(steps))
        then_sleep.wf.sleep(seconds)
        return total

    FAN_OUTS[kind] = fan_out
    SLEEPERS[kind] = then_sleep
    return sequential


FAN_OUTS: dict[str, Any] = {}
SLEEPERS: dict[str, Any] = {}
WORKFLOWS = {kind: _pair(kind) for kind in QUEUES}


def queues(kind: str) -> tuple[str, ...]:
    queue = QUEUES[kind]
    return (queue, f"{queue}_children") if SPLIT else (queue,)
