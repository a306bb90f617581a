"""Memory: worker resident memory and Redis memory with many workflows suspended on a timer.

    python benchmarks/memory.py [--workflows 10000] [--steps 10]

Starts ``--workflows`` workflows that each run ``--steps`` no-op steps and then sleep for an
hour, waits until the timer index holds them all, and reports: Redis ``used_memory``
grown per workflow (``INFO memory``, before and after), the ``MEMORY USAGE`` of one
workflow's keys (its tree's keys and its registry; the index rows it adds are in the first
figure), and the resident memory (``VmRSS``) of each worker process after a quarter of the
workflows and at the end (flat: bounded caches). Uses its own key prefix, deleted after.
Writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.step_latency import RESULTS, machine, service_env, workers


def rss_mb(leader: int) -> list[float]:
    """Resident memory of each process of the group but its leader (the worker processes)."""
    sizes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if int(stat[2]) == leader:
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            sizes.append(kb / 1024)
    return sorted(sizes)


def tree_bytes(app: Any, workflow_id: str) -> dict[str, int]:
    """MEMORY USAGE of every key of one workflow's tree, by kind of key (registry included)."""
    client, keys = app.state.client, app.state.keys
    registry = keys.registry(workflow_id)
    usage = {"registry": int(client.memory_usage(registry) or 0)}
    for member in client.smembers(registry):
        member = member.decode() if isinstance(member, bytes) else str(member)
        kind, owner = member.split(":", 1)
        k = keys.invocation(owner)
        names = [keys.data(owner)] if kind == "w" else [k.meta, k.journal, k.triggers, k.resolved, k.waiting, k.steps]
        who = "root " if owner == workflow_id else "children's "
        for name in names:
            label = who + name.rsplit(":", 1)[-1]
            usage[label] = usage.get(label, 0) + int(client.memory_usage(name) or 0)
    usage["total"] = sum(usage.values())
    return usage


def sleeping(app: Any) -> int:
    """Workflows that reached their timer (the timer index's size: suspended between two steps
    does not count)."""
    keys = app.state.keys
    return sum(int(app.state.client.zcard(f"{keys.shard_head(s)}:ix:due")) for s in range(keys.shards))


def start_all(app: Any, sleeper: Any, n: int, steps: int, leader: int) -> list[float]:
    quarter: list[float] = []
    for i in range(n):
        sleeper.send(steps, 3600.0)
        if i % 500 == 499:  # do not flood the queue: let the workers keep up
            while sleeping(app) < i - 1000:
                time.sleep(0.2)
        if i == n // 4:
            quarter = rss_mb(leader)
    deadline = time.monotonic() + 60 + n * steps / 50
    while sleeping(app) < n:
        if time.monotonic() > deadline:
            raise TimeoutError("the workflows did not all suspend in time")
        time.sleep(0.5)
    return quarter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    prefix = f"bench-memory-{uuid.uuid4().hex[:8]}"
    env = {**service_env(), "ENCORE_KEY_PREFIX": prefix}
    import os

    os.environ["ENCORE_KEY_PREFIX"] = prefix
    from benchmarks.encore_app import SLEEPERS, app, queues

    client = app.state.client
    with ExitStack() as stack:
        leader = stack.enter_context(workers("benchmarks.encore_app", 2, 8, env, queues("encore")))
        time.sleep(4.0)
        client.memory_purge() if hasattr(client, "memory_purge") else None
        before = int(client.info("memory")["used_memory"])
        quarter = start_all(app, SLEEPERS["encore"], args.workflows, args.steps, leader)
        after = int(client.info("memory")["used_memory"])
        end = rss_mb(leader)
        one = app.list_workflows(status="suspended", limit=1).items[0].workflow_id
        stack.callback(lambda: [client.delete(k) for k in client.scan_iter(match=f"{prefix}:*", count=1000)])
        results = {
            "workflows": args.workflows,
            "steps": args.steps,
            "redis bytes per suspended workflow (INFO memory)": (after - before) / args.workflows,
            "MEMORY USAGE of one workflow's keys": tree_bytes(app, one),
            "worker RSS MB after a quarter": quarter,
            "worker RSS MB at the end": end,
        }
    for name, value in results.items():
        print(f"{name}: {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
