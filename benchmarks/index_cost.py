"""What the workflow index adds to a step: the same transitions on an indexed root workflow
and on a child invocation (which the index does not list), in one run on one Redis.

Each transition is what a step costs the store: a delivery that wakes the invocation and
grants the lease (status -> running) and the pass's commit (status -> suspended). On a root,
the scripts also move the workflow between the index's status sets; on a child they only
find that it is not indexed. Prints the medians (us per transition) and the difference.

    python benchmarks/index_cost.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from dramatiq_encore.state import RedisState
from dramatiq_encore.state.backend import Commit, Trigger
from tests.integration.state_support import child_record, child_steps, record, start

RESULTS = Path(__file__).parent / "results"


def _transition(state: RedisState, invocation_id: str, n: int) -> float:
    began = time.perf_counter()
    delivery = state.deliver(invocation_id, Trigger.signal("go", n, f"s{n}", limit=10**9), None)
    assert delivery.token is not None, delivery
    assert state.commit(invocation_id, delivery.token, Commit(entries=[], status="suspended", signals=["go"])).ok
    return time.perf_counter() - began


def _suspend(state: RedisState, invocation_id: str, token: str) -> None:
    assert state.commit(invocation_id, token, Commit(entries=[], status="suspended", signals=["go"])).ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    prefix = f"bench-index-{uuid.uuid4().hex[:8]}"
    state = RedisState.from_url(os.environ.get("ENCORE_STATE_URL", "redis://127.0.0.1:6379/0"), prefix=prefix)
    try:
        root = "bench-root"
        _suspend(state, root, start(state, root, record(root)))
        parent = "bench-parent"
        parent_token = start(state, parent, record(parent))
        parent_commit = Commit(entries=[], status="suspended", waiting=[1], steps=child_steps(parent, 1))
        assert state.commit(parent, parent_token, parent_commit).ok
        child = f"{parent}/1"
        _suspend(state, child, start(state, child, child_record(parent, 1)))
        times: dict[str, list[float]] = {"root (indexed)": [], "child (not indexed)": []}
        for block in range(rounds // 50):  # the two kinds take turns, 50 at a time
            for _ in range(50):
                times["root (indexed)"].append(_transition(state, root, len(times["root (indexed)"])))
            for _ in range(50):
                times["child (not indexed)"].append(_transition(state, child, len(times["child (not indexed)"])))
            del block
        medians = {kind: statistics.median(values) * 1e6 for kind, values in times.items()}
        added = medians["root (indexed)"] - medians["child (not indexed)"]
        for kind, value in medians.items():
            print(f"{kind:<22} {value:8.1f} us per transition (deliver + commit)")
        print(f"{'the index adds':<22} {added:8.1f} us per transition")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "index_cost.json").write_text(json.dumps({"us": medians, "added_us": added, "rounds": rounds}))
    finally:
        for key in state.client.scan_iter(match=f"{prefix}:*"):
            state.client.delete(key)
        state.close()


if __name__ == "__main__":
    main()
