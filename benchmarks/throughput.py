"""Throughput, fan-out and CPU per step against the raw-dramatiq floor, in one run.

    python benchmarks/throughput.py [--rounds 5] [--workflows 200] [--children 1000]

W2: ``--workflows`` workflows of 3 sequential steps started at once; the floor: as many raw
chains of 6 hops (a step's request and reply, 3 times). Workflows (or chains) per second.
CPU per step: user + system seconds of every process of the worker group (from
``/proc/<pid>/stat``) during W2, divided by the steps it ran.
W4: one workflow that starts ``--children`` children with ``wf.start_task`` and gathers
them; the floor: one actor sends as many requests whose replies count down to a completion.
Seconds per fan-out.

Workers are started with the `dramatiq` CLI (2 processes x 8 threads per group), the floor's
with dramatiq's default broker settings, encore's with every durability default on; the
kinds take turns, ``--rounds`` times, and the medians are reported. Writes
``benchmarks/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.step_latency import RESULTS, TIMEOUT_S, machine, service_env, workers

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(select: Callable[[str, list[str]], bool]) -> float:
    """User + system CPU seconds of every live process ``select(command, stat fields)`` picks."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        if select(head.split("(", 1)[1], fields):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def group_cpu(leader: int) -> float:
    """User + system CPU seconds of every live process in ``leader``'s process group."""
    return proc_cpu(lambda _, fields: int(fields[2]) == leader)  # pgrp


def floor_w2(n: int) -> float:
    from benchmarks.raw_app import _redis, raw_step

    run_id = uuid.uuid4().hex
    start = time.perf_counter()
    for _ in range(n):
        raw_step.send(run_id, 0, 3)
    for _ in range(n):
        if _redis.blpop([f"bench:raw:{run_id}"], timeout=TIMEOUT_S) is None:
            raise TimeoutError("floor W2 did not finish")
    return time.perf_counter() - start


def encore_w2(n: int) -> float:
    from benchmarks.encore_app import WORKFLOWS

    start = time.perf_counter()
    invocations = [WORKFLOWS["encore"].send(3) for _ in range(n)]
    for invocation in invocations:
        assert invocation.wait(timeout=TIMEOUT_S) == 3
    return time.perf_counter() - start


def floor_w4(n: int) -> float:
    from benchmarks.raw_app import _redis, raw_fan

    run_id = uuid.uuid4().hex
    start = time.perf_counter()
    raw_fan.send(run_id, n)
    if _redis.blpop([f"bench:raw:{run_id}"], timeout=TIMEOUT_S) is None:
        raise TimeoutError("floor W4 did not finish")
    return time.perf_counter() - start


def encore_w4(n: int) -> float:
    from benchmarks.encore_app import FAN_OUTS

    start = time.perf_counter()
    assert FAN_OUTS["encore"].send(n).wait(timeout=TIMEOUT_S) == sum(range(n))
    return time.perf_counter() - start


def timed(run: Callable[[], float], leader: int, steps: int) -> tuple[float, float]:
    """(seconds, CPU seconds per step of the group) of one run."""
    before = group_cpu(leader)
    seconds = run()
    time.sleep(0.3)  # the last acks and commits
    return seconds, (group_cpu(leader) - before) / steps


def measure(args: argparse.Namespace, leaders: dict[str, int]) -> dict[str, Any]:
    n, children = args.workflows, args.children
    w2: dict[str, list[tuple[float, float]]] = {"floor": [], "encore": []}
    w4: dict[str, list[float]] = {"floor": [], "encore": []}
    encore_w2(10), floor_w2(10), encore_w4(50), floor_w4(50)  # warm-up
    for round_no in range(args.rounds):
        kinds = ["floor", "encore"] if round_no % 2 == 0 else ["encore", "floor"]
        for kind in kinds:
            run = floor_w2 if kind == "floor" else encore_w2
            w2[kind].append(timed(lambda run=run: run(n), leaders[kind], 3 * n))
            w4[kind].append((floor_w4 if kind == "floor" else encore_w4)(children))
    return {
        "W2 workflows/s": {k: n / statistics.median(s for s, _ in v) for k, v in w2.items()},
        "CPU ms per step (W2)": {k: statistics.median(c for _, c in v) * 1000 for k, v in w2.items()},
        f"W4 s per fan-out of {children}": {k: statistics.median(v) for k, v in w4.items()},
    }


def plot(results: dict[str, Any], path: Path) -> None:
    """Each figure's ratio to the floor as a bar, with its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = {"W2 workflows/s": 0.5, "CPU ms per step (W2)": 2.5}
    names = list(results)
    ratios = [results[n]["encore"] / results[n]["floor"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.barh(names, ratios, color="#2f7d4f")
    for i, name in enumerate(names):
        target = targets.get(name, 2.0)
        ax.plot([target, target], [i - 0.4, i + 0.4], color="#b3261e", linewidth=2)
        ax.text(ratios[i], i, f" {ratios[i]:.2f}", va="center", fontsize=8)
    ax.set_xlabel("encore / floor, same run (red: target)")
    ax.set_title("W2 throughput, CPU per step and W4 fan-out against the raw-dramatiq floor", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    print(f"workers {args.processes}x{args.threads} per kind | {machine()}")
    print("| figure | floor | encore | ratio (encore / floor) |\n|---|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {values['floor']:.3f} | {values['encore']:.3f} | {values['encore'] / values['floor']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": machine(), "workers": [args.processes, args.threads], "results": results}
    (RESULTS / "throughput.json").write_text(json.dumps(out, indent=2))
    plot(results, RESULTS / "throughput.png")
    print(f"written: {RESULTS / 'throughput.json'}, {RESULTS / 'throughput.png'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    env = service_env()
    from benchmarks.encore_app import queues

    group = (args.processes, args.threads)
    with ExitStack() as stack:
        leaders = {
            "floor": stack.enter_context(workers("benchmarks.raw_app", *group, env, ("bench_raw",))),
            "encore": stack.enter_context(workers("benchmarks.encore_app", *group, env, queues("encore"))),
        }
        time.sleep(4.0)  # the workers boot and declare their queues
        report(measure(args, leaders), args)


if __name__ == "__main__":
    main()
