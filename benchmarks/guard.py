"""A regression guard: short W1 and W2 runs against the floor, failing on a ratio past its bound.

    python benchmarks/guard.py [--max-w1 3.0] [--min-w2 0.25]

W1: 20 sequential steps, 10 runs of encore and of the floor taking turns (medians); W2: 100
workflows of 3 steps at once against 100 raw chains of 6 hops, 2 rounds. Prints both ratios
and exits 1 when W1's ratio to its floor exceeds ``--max-w1`` or W2's falls under ``--min-w2``
(ratios measured in one run, so they hold on a noisy machine). A failed measurement is
taken again, up to ``--attempts`` (3) in all, and the guard fails only when every attempt
fails: a real regression fails each of them, a noisy neighbour rarely does (on this machine
with other test suites running beside it, 2 of 6 single attempts fell under W2's bound; in a
quiet run none). Each attempt takes 15-20 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.step_latency import measure, run_encore, run_floor, service_env, workers
from benchmarks.throughput import encore_w2, floor_w2


def attempt(args: argparse.Namespace) -> bool:
    env = service_env()
    from benchmarks.encore_app import queues
    from benchmarks.raw_app import raw_step

    with ExitStack() as stack:
        stack.enter_context(workers("benchmarks.raw_app", 2, 8, env, ("bench_raw",)))
        stack.enter_context(workers("benchmarks.encore_app", 2, 8, env, queues("encore")))
        time.sleep(4.0)
        w1 = measure({"floor": lambda: run_floor(raw_step, 20), "encore": lambda: run_encore("encore", 20)}, 10)
        floor_w2(20), encore_w2(20)  # warm-up
        floor_s = min(floor_w2(100) for _ in range(2))
        encore_s = min(encore_w2(100) for _ in range(2))
    w1_ratio = w1["encore"] / w1["floor"]
    w2_ratio = floor_s / encore_s  # throughput ratio: encore's workflows/s over the floor's chains/s
    ok = w1_ratio <= args.max_w1 and w2_ratio >= args.min_w2
    print(
        f"guard: W1 {w1_ratio:.2f} x the floor (at most {args.max_w1}), "
        f"W2 {w2_ratio:.2f} of the floor's throughput (at least {args.min_w2}): {'ok' if ok else 'FAILED'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-w1", type=float, default=3.0)
    parser.add_argument("--min-w2", type=float, default=0.25)
    parser.add_argument("--attempts", type=int, default=3)
    args = parser.parse_args()
    return 0 if any(attempt(args) for _ in range(args.attempts)) else 1


if __name__ == "__main__":
    sys.exit(main())
