"""A regression guard: short W1 and W2 runs against the floor, failing on a ratio past its bound.

    python benchmarks/guard.py [--max-w1 3.0] [--min-w2 0.25] [--attempts 4]

W1: 20 sequential steps, 10 runs of encore and of the floor taking turns (medians); W2: 100
workflows of 3 steps at once against 100 raw chains of 6 hops, 4 rounds taking turns
(medians). Ratios are measured in one run (fresh worker groups for each attempt), so they
hold on a noisy machine; each figure keeps its best attempt (as ``timeit`` keeps the best
of its repeats: noise only ever slows a run down), attempts go on while a figure is past its
bound, up to ``--attempts``, and the guard exits 1 when W1's best ratio still exceeds
``--max-w1`` or W2's best still falls under ``--min-w2``. A real regression slows every
attempt; a noisy neighbour rarely slows four in a row. Each attempt takes 15-25 s; a quiet run
stops after the first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.step_latency import measure, run_encore, run_floor, service_env, workers
from benchmarks.throughput import encore_w2, floor_w2

ROUNDS_W2 = 4


def attempt() -> tuple[float, float]:
    """One measurement: (W1's ratio to its floor, W2's throughput ratio to its floor)."""
    env = service_env()
    from benchmarks.encore_app import queues
    from benchmarks.raw_app import raw_step

    with ExitStack() as stack:
        stack.enter_context(workers("benchmarks.raw_app", 2, 8, env, ("bench_raw",)))
        stack.enter_context(workers("benchmarks.encore_app", 2, 8, env, queues("encore")))
        time.sleep(4.0)
        w1 = measure({"floor": lambda: run_floor(raw_step, 20), "encore": lambda: run_encore("encore", 20)}, 10)
        floor_w2(100), encore_w2(100)  # warm-up at full concurrency (connection pools, caches)
        w2: dict[str, list[float]] = {"floor": [], "encore": []}
        for round_no in range(ROUNDS_W2):  # the kinds take turns, each going first half the time
            for kind in ("floor", "encore") if round_no % 2 == 0 else ("encore", "floor"):
                w2[kind].append((floor_w2 if kind == "floor" else encore_w2)(100))
    w1_ratio = w1["encore"] / w1["floor"]
    # throughput ratio: encore's workflows/s over the floor's chains/s, medians of the rounds
    w2_ratio = statistics.median(w2["floor"]) / statistics.median(w2["encore"])
    return w1_ratio, w2_ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-w1", type=float, default=3.0)
    parser.add_argument("--min-w2", type=float, default=0.25)
    parser.add_argument("--attempts", type=int, default=4)
    args = parser.parse_args()
    best_w1, best_w2 = float("inf"), 0.0
    for number in range(1, args.attempts + 1):
        w1_ratio, w2_ratio = attempt()
        best_w1, best_w2 = min(best_w1, w1_ratio), max(best_w2, w2_ratio)
        print(f"guard attempt {number}: W1 {w1_ratio:.2f} x the floor, W2 {w2_ratio:.2f} of its throughput")
        if best_w1 <= args.max_w1 and best_w2 >= args.min_w2:
            break
    ok = best_w1 <= args.max_w1 and best_w2 >= args.min_w2
    print(
        f"guard: W1 {best_w1:.2f} x the floor (at most {args.max_w1}), "
        f"W2 {best_w2:.2f} of the floor's throughput (at least {args.min_w2}), best of {number}: "
        f"{'ok' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
