"""Per-step latency of a sequential workflow against the raw-dramatiq floor, in one run.

    python benchmarks/step_latency.py [--steps 20] [--runs 15] [--processes 2] [--threads 8]

Starts worker processes with the `dramatiq` CLI (floor workers and encore workers in turn),
runs workflows one at a time, and prints the median per-step time of each and their ratio.
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

import redis

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@contextmanager
def workers(module: str, processes: int, threads: int, env: dict[str, str]) -> Iterator[None]:
    cmd = [sys.executable, "-m", "dramatiq", module, "-p", str(processes), "-t", str(threads)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # workers boot and declare their queues
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def poll(done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("a benchmark run did not finish in time")
        time.sleep(0.0005)


def measure_floor(steps: int, runs: int) -> list[float]:
    from benchmarks.raw_app import _redis, raw_step

    per_step = []
    for _ in range(runs):
        run_id = uuid.uuid4().hex
        start = time.perf_counter()
        raw_step.send(run_id, 0, steps)
        done_key = f"bench:raw:{run_id}"
        poll(lambda key=done_key: _redis.exists(key) == 1)
        per_step.append((time.perf_counter() - start) / steps)
    return per_step


def measure_encore(steps: int, runs: int) -> list[float]:
    from benchmarks.encore_app import app, sequential

    client, keys = app.state.client, app.state.keys  # type: ignore[attr-defined]
    per_step = []
    for _ in range(runs):
        start = time.perf_counter()
        inv = sequential.send(steps)
        meta_key = keys.meta(inv.invocation_id)
        # As cheap a poll as the floor's EXISTS: one HGET, no decoding of the record.
        poll(lambda key=meta_key: client.hget(key, "status") == "succeeded")
        per_step.append((time.perf_counter() - start) / steps)
        assert inv.result == sum(range(steps))
    return per_step


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
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2, help="alternate floor/encore this many times")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    env = service_env()
    redis.Redis.from_url(env["ENCORE_STATE_URL"]).ping()

    floor: list[float] = []
    confirmed: list[float] = []
    encore: list[float] = []
    for _ in range(args.rounds):
        with workers("benchmarks.raw_app", args.processes, args.threads, env):
            measure_floor(args.steps, 3)  # warm-up
            floor += measure_floor(args.steps, args.runs)
        # The same raw actors with publisher confirms: what that durability setting alone costs.
        with workers("benchmarks.raw_app", args.processes, args.threads, {**env, "BENCH_RAW_CONFIRMS": "1"}):
            measure_floor(args.steps, 3)
            confirmed += measure_floor(args.steps, args.runs)
        with workers("benchmarks.encore_app", args.processes, args.threads, env):
            measure_encore(args.steps, 3)  # warm-up
            encore += measure_encore(args.steps, args.runs)
    f, c, e = statistics.median(floor), statistics.median(confirmed), statistics.median(encore)
    print(f"steps per workflow {args.steps} | runs {len(encore)} | workers {args.processes}x{args.threads}")
    print(f"floor (raw dramatiq, 2 hops per step, default broker settings): {f * 1000:.3f} ms/step")
    print(f"raw dramatiq with publisher confirms (reference only): {c * 1000:.3f} ms/step ({c / f:.2f} x floor)")
    print(f"encore (RabbitMQ confirms + Redis, every durability default on): {e * 1000:.3f} ms/step")
    print(f"ratio encore/floor: {e / f:.2f} (target <= 2.5)")


if __name__ == "__main__":
    main()
