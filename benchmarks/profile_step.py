"""Where a step's time goes: py-spy samples of the worker processes while 20-step workflows run.

    python benchmarks/profile_step.py [--seconds 20]

Starts `dramatiq benchmarks.profile_app -p 2 -t 8`, runs 20-step sequential workflows one at a
time for ``--seconds``, samples every worker process with py-spy (200 Hz), and splits the
samples of the threads that process messages by what they were in (the first match of
``PARTS`` from the top of the stack down), as a share and as milliseconds of one step.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.step_latency import service_env  # noqa: E402

#: (label, frame fragments): a sample counts for the first part one of its frames matches.
PARTS = [
    ("Redis: a leaf's first pass, recorded (and its parent delivered) in one round trip", ("finish_first_pass",)),
    ("Redis: deliver (a parent's result, a start)", ("RedisState.deliver ",)),
    ("Redis: commit", ("RedisState.commit ",)),
    ("Redis: other calls", ("RedisState.", "redis/")),
    ("RabbitMQ: publish with confirm", ("RabbitmqBroker.enqueue",)),
    ("the pass: user code and the engine", ("run_pass", "_execute (", "Pass.start", "Pass.answer", "Pass._switch")),
    ("JSON and pydantic: envelopes, records, journal entries", ("pydantic", "json/", "check_body")),
    ("dramatiq: consumer, middleware, ack", ("dramatiq/",)),
]


def _parts(files: list[Path]) -> tuple[collections.Counter[str], int]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if "WorkerThread.process_message" not in stack:
                continue
            frames = stack.split(";")
            total += int(count)
            label = next((name for name, marks in PARTS if any(m in f for f in frames for m in marks)), "other")
            counts[label] += int(count)
    return counts, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    env = service_env()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(tempfile.mkdtemp(prefix="encore-profile-"))
    cmd = [sys.executable, "-m", "dramatiq", "benchmarks.profile_app", "-p", "2", "-t", "8"]
    cmd += ["--queues", "bench_profile"]
    workers = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(4.0)
        from benchmarks.profile_app import profiled_sequential

        pids = subprocess.run(["pgrep", "-P", str(workers.pid)], capture_output=True, text=True).stdout.split()
        spies = [subprocess.Popen([spy, "record", "-p", pid, "-d", str(int(args.seconds)), "-r", "200", "-f", "raw",
                                   "-o", str(out / f"{pid}.txt"), "--nonblocking"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]
        started, runs = time.monotonic(), 0
        while time.monotonic() - started < args.seconds:
            profiled_sequential.send(20).wait(timeout=60)
            runs += 1
        per_step_ms = (time.monotonic() - started) / (runs * 20) * 1000
        for process in spies:
            process.wait(timeout=60)
    finally:
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait(timeout=30)
    counts, total = _parts(sorted(out.glob("*.txt")))
    print(f"{runs} workflows of 20 steps, {per_step_ms:.3f} ms per step; {total} samples of message-processing threads")
    print("| where | share | ms of a step |\n|---|---|---|")
    for label, count in counts.most_common():
        print(f"| {label} | {count / total * 100:.0f} % | {count / total * per_step_ms:.2f} |")


if __name__ == "__main__":
    main()
