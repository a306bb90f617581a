"""The floor: raw dramatiq actors doing a step's two hops (request, reply) per step.

Default broker settings (no publisher confirms), as a plain dramatiq user would run them.
"""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker

# BENCH_RAW_CONFIRMS=1 measures what publisher confirms alone cost the floor.
broker = RabbitmqBroker(
    url=os.environ["ENCORE_BROKER_URL"], confirm_delivery=os.environ.get("BENCH_RAW_CONFIRMS") == "1"
)
dramatiq.set_broker(broker)
_redis = redis.Redis.from_url(os.environ["ENCORE_STATE_URL"])


@dramatiq.actor(queue_name="bench_raw", max_retries=0)
def raw_step(run_id: str, step: int, steps: int) -> None:
    raw_reply.send(run_id, step, steps)


@dramatiq.actor(queue_name="bench_raw", max_retries=0)
def raw_reply(run_id: str, step: int, steps: int) -> None:
    if step + 1 < steps:
        raw_step.send(run_id, step + 1, steps)
    else:
        _redis.set(f"bench:raw:{run_id}", "done", ex=600)
