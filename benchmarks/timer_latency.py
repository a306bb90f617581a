"""How late a durable timer fires: `wf.sleep(2)` on RabbitMQ + Redis with `dramatiq` CLI workers.

    python benchmarks/timer_latency.py [--sleeps 8] [--seconds 2]

Lateness = (utc_now after the sleep - utc_now before it) - the duration, so it includes the
wake-up hop and the replay. Workers are idle apart from the timers (2 processes x 8 threads).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.step_latency import service_env, workers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sleeps", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    env = service_env()
    from benchmarks.timer_app import sleeper

    late: list[float] = []
    with workers("benchmarks.timer_app", 2, 8, env, ("bench_timer",)):
        time.sleep(4.0)  # the workers boot and declare their queues
        for _ in range(args.sleeps):  # one at a time: an idle system
            result = sleeper.send(args.seconds).wait(timeout=args.seconds + 30)
            slept = dt.datetime.fromisoformat(result["after"]) - dt.datetime.fromisoformat(result["before"])
            late.append(slept.total_seconds() - args.seconds)
    print(f"{args.sleeps} sleeps of {args.seconds} s: fired late by median {statistics.median(late):.3f} s, "
          f"max {max(late):.3f} s, min {min(late):.3f} s (target: within 1 s)")


if __name__ == "__main__":
    main()
