"""What sleeping workflows cost: idle CPU of the workers and timer lateness with many sleepers.

    python benchmarks/sleepers.py [--sleepers 10000] [--idle 30] [--probes 200] [--mode poll|messages]

Starts ``--sleepers`` workflows that sleep for an hour, waits until the index lists them all
as suspended, then measures the CPU (user + system, from /proc) of the worker group (2
processes x 8 threads) over ``--idle`` idle seconds, as a share of one core; then starts
``--probes`` workflows at once that sleep 2 to 4 s and reports how late they fired (p50, p99,
max). ``--mode poll`` is the default (the timer index, ``ENCORE_TIMER_POLL=1``); ``messages``
is the delayed-message path (``ENCORE_TIMER_POLL=0``). Uses its own key prefix and queue
flushes; writes ``benchmarks/results/sleepers-<mode>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.step_latency import RESULTS, machine, service_env, workers
from benchmarks.throughput import group_cpu


def _suspend_all(app, sleeper, n: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        sleeper.send(3600.0)
        if i % 1000 == 999:
            while app.count_workflows("suspended") < i - 2000:
                time.sleep(0.2)
    deadline = time.monotonic() + 60 + n / 20
    while app.count_workflows("suspended") < n:
        if time.monotonic() > deadline:
            raise TimeoutError("the sleepers did not all suspend in time")
        time.sleep(0.5)


def _lateness(sleeper, probes: int) -> list[float]:  # type: ignore[no-untyped-def]
    durations = [2.0 + 2.0 * i / max(1, probes - 1) for i in range(probes)]
    invocations = [(sleeper.send(d), d) for d in durations]
    late = []
    for invocation, seconds in invocations:
        result = invocation.wait(timeout=120)
        slept = dt.datetime.fromisoformat(result["after"]) - dt.datetime.fromisoformat(result["before"])
        late.append(slept.total_seconds() - seconds)
    return sorted(late)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sleepers", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--mode", choices=["poll", "messages"], default="poll")
    args = parser.parse_args()
    prefix = f"bench-sleepers-{uuid.uuid4().hex[:8]}"
    poll = "1" if args.mode == "poll" else "0"
    os.environ.update(ENCORE_KEY_PREFIX=prefix, ENCORE_TIMER_POLL=poll)
    env = {**service_env(), "ENCORE_KEY_PREFIX": prefix, "ENCORE_TIMER_POLL": poll}
    from benchmarks.timer_app import app, sleeper

    client = app.state.client
    try:
        with workers("benchmarks.timer_app", 2, 8, env, ("bench_timer", "bench_timer.DQ")) as leader:
            time.sleep(4.0)
            app.broker.flush("bench_timer")
            _suspend_all(app, sleeper, args.sleepers)
            time.sleep(2.0)
            before = group_cpu(leader)
            time.sleep(args.idle)
            idle = (group_cpu(leader) - before) / args.idle
            late = _lateness(sleeper, args.probes)
    finally:
        app.broker.flush("bench_timer")
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    results = {
        "mode": args.mode,
        "sleepers": args.sleepers,
        "idle CPU, share of one core": idle,
        "lateness s p50": statistics.median(late),
        "lateness s p99": late[int(len(late) * 0.99) - 1],
        "lateness s max": late[-1],
    }
    for name, value in results.items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"sleepers-{args.mode}.json").write_text(json.dumps({"machine": machine(), **results}, indent=2))


if __name__ == "__main__":
    main()
