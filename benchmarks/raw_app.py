"""The floor: raw dramatiq actors doing a step's two hops (request, reply) per step.

Two pairs of actors on two queues: ``bench_raw`` is served by workers with dramatiq's
default broker settings (no publisher confirms), as a plain dramatiq user runs them;
``bench_raw_confirms`` by workers started with BENCH_RAW_CONFIRMS=1, which measures what
publisher confirms alone cost.
"""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker

CONFIRMS = os.environ.get("BENCH_RAW_CONFIRMS") == "1"
broker = RabbitmqBroker(url=os.environ["ENCORE_BROKER_URL"], confirm_delivery=CONFIRMS)
dramatiq.set_broker(broker)
_redis = redis.Redis.from_url(os.environ["ENCORE_STATE_URL"])


def _pair(queue: str) -> tuple[dramatiq.Actor[..., None], dramatiq.Actor[..., None]]:
    def step(run_id: str, step: int, steps: int) -> None:
        reply.send(run_id, step, steps)

    def reply_fn(run_id: str, step: int, steps: int) -> None:
        if step + 1 < steps:
            first.send(run_id, step + 1, steps)
        else:
            _redis.rpush(f"bench:raw:{run_id}", "done")  # the driver waits on it with BLPOP

    first = dramatiq.actor(step, actor_name=f"{queue}_step", queue_name=queue, max_retries=0)
    reply = dramatiq.actor(reply_fn, actor_name=f"{queue}_reply", queue_name=queue, max_retries=0)
    return first, reply


raw_step, raw_reply = _pair("bench_raw")
confirmed_step, confirmed_reply = _pair("bench_raw_confirms")


def _fan(queue: str) -> dramatiq.Actor[..., None]:
    """W4's floor: one actor sends ``n`` requests; each reply counts down; the last one done."""

    def fan_fn(run_id: str, n: int) -> None:
        _redis.set(f"bench:raw:left:{run_id}", n)
        for _ in range(n):
            request.send(run_id)

    def request_fn(run_id: str) -> None:
        answer.send(run_id)

    def answer_fn(run_id: str) -> None:
        if _redis.decr(f"bench:raw:left:{run_id}") == 0:
            _redis.delete(f"bench:raw:left:{run_id}")
            _redis.rpush(f"bench:raw:{run_id}", "done")

    fan = dramatiq.actor(fan_fn, actor_name=f"{queue}_fan", queue_name=queue, max_retries=0)
    request = dramatiq.actor(request_fn, actor_name=f"{queue}_request", queue_name=queue, max_retries=0)
    answer = dramatiq.actor(answer_fn, actor_name=f"{queue}_answer", queue_name=queue, max_retries=0)
    return fan


raw_fan = _fan("bench_raw")
