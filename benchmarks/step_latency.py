"""Per-step latency of sequential workflows against the raw-dramatiq floor, in one run.

    python benchmarks/step_latency.py [--runs 30] [--processes 2] [--threads 8] [--split-queues]

W1: 20 sequential no-op steps. W3: one workflow of 10, 100 and 1,000 sequential steps (the
cost of a step as the history grows). Each figure is next to raw dramatiq actors doing the
same hops (request and reply per step) on the same RabbitMQ in the same run, and encore runs
with the fast paths on and off (ENCORE_FAST_PATH=0). Prints a table, writes it as JSON and
W3 as a PNG plot (``benchmarks/results/``).

Neither side polls for the end of a run (a polling driver would take CPU from what it
measures): the floor's last actor pushes to a Redis list the driver waits on with BLPOP,
and encore's driver calls ``Invocation.wait``, which subscribes to the workflow's end.
The worker groups (floor, floor with publisher confirms, encore, encore with the fast paths
off) all run at once, started with the `dramatiq` CLI; the kinds take turns in short blocks
so that a drift of the shared machine's speed hits all alike. Medians.
Needs RabbitMQ and Redis (ENCORE_BROKER_URL / ENCORE_STATE_URL, default localhost).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = 5  # runs in a row of one kind before the next kind's turn
PAUSE_S = 0.05  # what a run left (acks, its last commit) is done before the next starts
TIMEOUT_S = 120
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
KINDS = ("floor", "confirms", "encore", "plain")
LABELS = {
    "floor": "floor: raw dramatiq, 2 hops per step, default broker settings",
    "confirms": "raw dramatiq with publisher confirms (reference)",
    "encore": "dramatiq-encore, fast paths on (the default)",
    "plain": "dramatiq-encore, fast paths off (ENCORE_FAST_PATH=0)",
}


@contextmanager
def workers(module: str, processes: int, threads: int, env: dict[str, str], queues: tuple[str, ...]) -> Iterator[int]:
    """A `dramatiq` worker group in its own process group; yields the group's id."""
    cmd = [sys.executable, "-m", "dramatiq", module, "-p", str(processes), "-t", str(threads), "--queues", *queues]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc.pid
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


def run_encore(kind: str, steps: int) -> float:
    """One encore workflow: seconds per step, waited for with the public ``Invocation.wait``."""
    from benchmarks.encore_app import WORKFLOWS

    start = time.perf_counter()
    result = WORKFLOWS[kind].send(steps).wait(timeout=TIMEOUT_S)
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


def measure(runners: dict[str, Callable[[], float]], runs: int) -> dict[str, float]:
    """Median seconds per step of each kind, the kinds taking turns in blocks of BLOCK runs."""
    times: dict[str, list[float]] = {kind: [] for kind in runners}
    for run in runners.values():  # warm-up
        run()
    order = list(runners)
    for i in range(0, runs, BLOCK):
        shift = (i // BLOCK) % len(order)  # nobody always goes first
        for kind in order[shift:] + order[:shift]:
            for _ in range(min(BLOCK, runs - i)):
                time.sleep(PAUSE_S)
                times[kind].append(runners[kind]())
    return {kind: statistics.median(values) for kind, values in times.items()}


def runners(steps: int) -> dict[str, Callable[[], float]]:
    from benchmarks.raw_app import confirmed_step, raw_step

    return {
        "floor": lambda: run_floor(raw_step, steps),
        "confirms": lambda: run_floor(confirmed_step, steps),
        "encore": lambda: run_encore("encore", steps),
        "plain": lambda: run_encore("plain", steps),
    }


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| workload | " + " | ".join(KINDS) + " | encore / floor | off / floor |", "|---" * 7 + "|"]
    for name, medians in results.items():
        floor = medians["floor"]
        cells = " | ".join(f"{medians[kind] * 1000:.3f} ms" for kind in KINDS)
        lines.append(f"| {name} | {cells} | {medians['encore'] / floor:.2f} | {medians['plain'] / floor:.2f} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, float]], lengths: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for kind in KINDS:
        ax.plot(lengths, [results[f"W3 {n} steps"][kind] * 1000 for n in lengths], marker="o", label=LABELS[kind])
    ax.set_xscale("log")
    ax.set_xlabel("steps in the workflow (history length)")
    ax.set_ylabel("ms per step (median)")
    ax.set_title("W3: per-step cost against history length")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="workflows of each kind for W1 (fewer for W3's long ones)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 100, 1000], help="W3's workflow lengths")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--split-queues", action="store_true", help="children on their own queue")
    args = parser.parse_args()
    if args.split_queues:
        os.environ["BENCH_SPLIT_QUEUES"] = "1"
    env = service_env()
    redis.Redis.from_url(env["ENCORE_STATE_URL"]).ping()
    from benchmarks.encore_app import queues

    group = (args.processes, args.threads)
    with ExitStack() as stack:
        stack.enter_context(workers("benchmarks.raw_app", *group, env, ("bench_raw",)))
        stack.enter_context(workers("benchmarks.raw_app", *group, {**env, "BENCH_RAW_CONFIRMS": "1"},
                                    ("bench_raw_confirms",)))
        stack.enter_context(workers("benchmarks.encore_app", *group, env, queues("encore")))
        stack.enter_context(workers("benchmarks.encore_app", *group, {**env, "ENCORE_FAST_PATH": "0"}, queues("plain")))
        time.sleep(4.0)  # the workers boot and declare their queues
        results = {"W1 20 steps": measure(runners(20), args.runs)}
        for n in args.lengths:
            results[f"W3 {n} steps"] = measure(runners(n), max(3, min(args.runs, 2000 // n)))
    report(results, args)


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    queues = "children on their own queue" if args.split_queues else "parent and children on one queue"
    print(f"workers {args.processes}x{args.threads} per kind | {queues} | {machine()}")
    print(table(results))
    lengths = sorted(args.lengths)
    first, last = results[f"W3 {lengths[0]} steps"], results[f"W3 {lengths[-1]} steps"]
    for kind in ("encore", "plain", "floor"):
        print(f"W3 growth, {kind}: {last[kind] / first[kind]:.2f} x from {lengths[0]} to {lengths[-1]} steps "
              "(target for encore <= 1.3)")
    RESULTS.mkdir(exist_ok=True)
    suffix = "-split" if args.split_queues else ""
    (RESULTS / f"step_latency{suffix}.json").write_text(json.dumps(
        {"machine": machine(), "workers": [args.processes, args.threads], "split_queues": args.split_queues,
         "ms_per_step": {name: {k: v * 1000 for k, v in m.items()} for name, m in results.items()}}, indent=2))
    plot(results, lengths, RESULTS / f"w3{suffix}.png")
    print(f"written: {RESULTS / f'step_latency{suffix}.json'}, {RESULTS / f'w3{suffix}.png'}")


if __name__ == "__main__":
    main()
