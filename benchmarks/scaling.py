"""The scaling curve: W2 with 1 and 2 worker processes, and what the next core would add.

    python benchmarks/scaling.py [--rounds 3] [--workflows 200] [--threads 8]

For each worker count (1 and 2 processes of ``--threads`` threads, encore and the raw-dramatiq
floor taking turns in the same run), W2's throughput and the CPU each step costs, split by
who spends it: the worker processes, ``redis-server`` and RabbitMQ (``beam.smp``), read from
``/proc``. From those, the projection: a core given to workers adds ``1 / (3 x worker CPU per
step)`` workflows/s, until Redis, which runs its scripts on one core, saturates at
``1 / (3 x Redis CPU per step)`` workflows/s. Writes ``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.step_latency import RESULTS, machine, service_env, workers
from benchmarks.throughput import encore_w2, floor_w2, group_cpu, proc_cpu

STEPS = 3  # W2's workflows have 3 steps (the floor's chains: 3 request/reply pairs)


def server_cpu(name: str) -> float:
    """User + system CPU seconds of every process whose command is ``name`` (redis-server, beam.smp)."""
    return proc_cpu(lambda command, _: command == name)


def one_run(kind: str, n: int, leader: int) -> dict[str, float]:
    """W2 once: workflows/s and CPU ms per step of the workers, Redis and RabbitMQ."""
    before = (group_cpu(leader), server_cpu("redis-server"), server_cpu("beam.smp"))
    seconds = (floor_w2 if kind == "floor" else encore_w2)(n)
    time.sleep(0.3)  # the last acks and commits
    after = (group_cpu(leader), server_cpu("redis-server"), server_cpu("beam.smp"))
    per_step = [(b - a) * 1000 / (STEPS * n) for a, b in zip(before, after, strict=True)]
    return {"workflows/s": n / seconds, "workers": per_step[0], "redis": per_step[1], "rabbitmq": per_step[2]}


def curve_point(args: argparse.Namespace, processes: int) -> dict[str, dict[str, float]]:
    env = service_env()
    from benchmarks.encore_app import queues

    runs: dict[str, list[dict[str, float]]] = {"floor": [], "encore": []}
    with ExitStack() as stack:
        leaders = {
            "floor": stack.enter_context(workers("benchmarks.raw_app", processes, args.threads, env, ("bench_raw",))),
            "encore": stack.enter_context(
                workers("benchmarks.encore_app", processes, args.threads, env, queues("encore"))
            ),
        }
        time.sleep(4.0)  # the workers boot and declare their queues
        floor_w2(20), encore_w2(20)  # warm-up
        for round_no in range(args.rounds):
            for kind in ["floor", "encore"] if round_no % 2 == 0 else ["encore", "floor"]:
                runs[kind].append(one_run(kind, args.workflows, leaders[kind]))
    return {kind: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for kind, rs in runs.items()}


def projection(point: dict[str, float]) -> dict[str, float]:
    """What one more core given to the workers adds, and where Redis' single core stops it."""
    return {
        "workflows/s per worker core": 1000 / (STEPS * point["workers"]),
        "Redis ceiling, workflows/s": 1000 / (STEPS * point["redis"]) if point["redis"] else float("inf"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    curve = {processes: curve_point(args, processes) for processes in (1, 2)}
    print(f"W2 ({args.workflows} x {STEPS} steps), {args.threads} threads per process | {machine()}")
    print("| processes | kind | workflows/s | CPU ms/step: workers | Redis | RabbitMQ |\n|---|---|---|---|---|---|")
    for processes, kinds in curve.items():
        for kind, p in kinds.items():
            print(
                f"| {processes} | {kind} | {p['workflows/s']:.0f} | {p['workers']:.2f} | {p['redis']:.2f} "
                f"| {p['rabbitmq']:.2f} |"
            )
    nxt = {kind: projection(curve[2][kind]) for kind in ("floor", "encore")}
    for kind, figures in nxt.items():
        print(f"{kind}: " + ", ".join(f"{name} {value:.0f}" for name, value in figures.items()))
    RESULTS.mkdir(exist_ok=True)
    out: dict[str, Any] = {"machine": machine(), "threads": args.threads, "curve": curve, "next core": nxt}
    (RESULTS / "scaling.json").write_text(json.dumps(out, indent=2))
    print(f"written: {RESULTS / 'scaling.json'}")


if __name__ == "__main__":
    main()
