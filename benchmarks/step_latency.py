"""Per-step latency of a sequential workflow against the raw-dramatiq floor, in one run.

    python benchmarks/step_latency.py [--steps 20] [--runs 30] [--processes 2] [--threads 8] [--split-queues]

Neither side polls for the end of a run (a polling driver would take CPU from what it
measures): the floor's last actor pushes to a Redis list the driver waits on with BLPOP,
and encore's driver calls ``Invocation.wait``, which subscribes to the workflow's end.

Starts three groups of worker processes with the `dramatiq` CLI (the floor's raw actors,
the same raw actors with publisher confirms, and encore), then runs workflows one at a
time, in short blocks of each kind taking turns, so that all three see the same machine
(a shared one: its speed drifts from minute to minute). Prints the median per-step time
of each and the ratio encore/floor.
Needs RabbitMQ and Redis (ENCORE_BROKER_URL / ENCORE_STATE_URL, default localhost).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
# Runs go in blocks of BLOCK workflows of one kind, the kinds taking turns, so a drift of
# the machine's speed affects all of them alike; PAUSE_S between runs keeps one run's
# trailing work (acks, a last commit) out of the next run's time.
BLOCK = 5
PAUSE_S = 0.05
TIMEOUT_S = 60
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@contextmanager
def workers(
    module: str, processes: int, threads: int, env: dict[str, str], queues: tuple[str, ...] = ()
) -> Iterator[None]:
    cmd = [sys.executable, "-m", "dramatiq", module, "-p", str(processes), "-t", str(threads)]
    if queues:
        cmd += ["--queues", *queues]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # workers boot and declare their queues
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def run_floor(step: Any, steps: int) -> float:
    """One run of raw actors: seconds per step (the last reply pushes to a list; BLPOP waits)."""
    from benchmarks.raw_app import _redis

    run_id = uuid.uuid4().hex
    start = time.perf_counter()
    step.send(run_id, 0, steps)
    if _redis.blpop([f"bench:raw:{run_id}"], timeout=TIMEOUT_S) is None:
        raise TimeoutError("a floor run did not finish in time")
    return (time.perf_counter() - start) / steps


def run_encore(steps: int) -> float:
    """One encore workflow: seconds per step, waited for with the public ``Invocation.wait``
    (which subscribes to the workflow's end: no polling, like the floor's BLPOP)."""
    from benchmarks.encore_app import sequential

    start = time.perf_counter()
    inv = sequential.send(steps)
    result = inv.wait(timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - start
    assert result == sum(range(steps))
    return elapsed / steps


def service_env() -> dict[str, str]:
    """The environment for workers and this process: the service URLs (localhost by default)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("ENCORE_BROKER_URL", DEFAULT_AMQP)
    env.setdefault("ENCORE_STATE_URL", DEFAULT_REDIS)
    os.environ.update({k: env[k] for k in ("ENCORE_BROKER_URL", "ENCORE_STATE_URL")})
    sys.path.insert(0, str(ROOT))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30, help="workflows of each kind")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--split-queues", action="store_true", help="children on their own queue: every result is a message"
    )
    args = parser.parse_args()
    if args.split_queues:
        os.environ["BENCH_SPLIT_QUEUES"] = "1"
    env = service_env()
    redis.Redis.from_url(env["ENCORE_STATE_URL"]).ping()
    from benchmarks.raw_app import confirmed_step, raw_step

    kinds: dict[str, Callable[[], float]] = {
        "floor": lambda: run_floor(raw_step, args.steps),
        "confirms": lambda: run_floor(confirmed_step, args.steps),
        "encore": lambda: run_encore(args.steps),
    }
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    group = (args.processes, args.threads)
    with (
        workers("benchmarks.raw_app", *group, env, queues=("bench_raw",)),
        workers("benchmarks.raw_app", *group, {**env, "BENCH_RAW_CONFIRMS": "1"}, queues=("bench_raw_confirms",)),
        workers("benchmarks.encore_app", *group, env),
    ):
        for _ in range(3):  # warm-up
            for run in kinds.values():
                run()
        for i in range(0, args.runs, BLOCK):
            order = list(kinds)[(i // BLOCK) % 3:] + list(kinds)[:(i // BLOCK) % 3]  # nobody always goes first
            for kind in order:
                for _ in range(min(BLOCK, args.runs - i)):
                    time.sleep(PAUSE_S)  # what the previous run left (acks, its last commit) is done
                    times[kind].append(kinds[kind]())
    f, c, e = (statistics.median(times[kind]) for kind in kinds)
    queues = "children on their own queue" if args.split_queues else "parent and children on one queue"
    print(f"steps per workflow {args.steps} | runs {args.runs} of each, in turns | "
          f"workers {args.processes}x{args.threads} per kind | encore: {queues}")
    print(f"floor (raw dramatiq, 2 hops per step, default broker settings): {f * 1000:.3f} ms/step")
    print(f"raw dramatiq with publisher confirms (reference only): {c * 1000:.3f} ms/step ({c / f:.2f} x floor)")
    print(f"encore (RabbitMQ confirms + Redis, every durability default on): {e * 1000:.3f} ms/step")
    print(f"ratio encore/floor: {e / f:.2f} (target <= 2.5)")


if __name__ == "__main__":
    main()
