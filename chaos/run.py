"""The chaos runner: workflows on a real cluster under injected faults, checked against a reference.

    python -m chaos.run --workflows 300 --seed 1     # long run
    python -m chaos.run --short                      # about 40 workflows, CI

It starts its own Redis (append-only file) and three `dramatiq chaos.app` workers, publishes
the workflows at a steady rate while the seeded injector kills, disconnects, restarts and
pauses things, waits for every workflow, then compares each one with a crash-free embedded
run of the same workflow ids. Exit code 0 only when nothing was lost, stuck or mismatched.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import dramatiq.errors
import pika.exceptions
import redis

from dramatiq_encore.errors import BrokerUnavailable
from dramatiq_encore.state.models import FINISHED

from .cluster import ROOT, Cluster, purge, queue_depth
from .faults import KINDS, Injector, make_schedule
from .reference import WorkflowSpec, collect, compare, finish_reference, plan_workload, start_reference

logger = logging.getLogger("chaos.run")

QUEUE = "chaos"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
COUNT_URL = "redis://127.0.0.1:6379/0"
# dramatiq 2 renamed ConnectionError (the old name warns); 1.x only has the old one.
_BROKER_ERROR: type[Exception] = (
    getattr(dramatiq.errors, "BrokerConnectionError", None) or dramatiq.errors.ConnectionError
)
# What the driver retries on while publishing: its connection closed, or the chaos Redis down.
RETRYABLE = (
    _BROKER_ERROR, BrokerUnavailable, pika.exceptions.AMQPError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError,
)
SEND_GIVE_UP_S = 120.0
POLL_S = 0.25


@dataclasses.dataclass(frozen=True)
class RunConfig:
    workflows: int
    seed: int
    window: float  # seconds over which workflows are published and faults injected
    faults: int
    min_each: int
    drain: float  # seconds allowed after the window for every workflow to finish
    workers: int
    threads: int
    redis_port: int
    keep_logs: bool
    publish_delay_ms: int


def parse_config(argv: list[str] | None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="reproduces the workload and fault schedule")
    parser.add_argument("--short", action="store_true", help="about 40 workflows, every fault kind, under 2 minutes")
    parser.add_argument("--window", type=float, default=None, help="seconds of publishing and faults")
    parser.add_argument("--faults", type=int, default=None)
    parser.add_argument("--drain", type=float, default=None, help="seconds allowed to finish after the window")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--keep-logs", action="store_true", help="keep worker logs even when the run passes")
    parser.add_argument("--publish-delay-ms", type=int, default=20,
                        help="workers delay each publish by up to this (widens the commit-to-publish gap); 0: off")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    workflows = 40 if args.short else args.workflows
    window = args.window or (45.0 if args.short else max(60.0, 0.6 * workflows))
    min_each = 1 if args.short else 5
    faults = args.faults or (8 if args.short else max(32, round(window / 6)))
    drain = args.drain or (45.0 if args.short else 90.0)
    return RunConfig(workflows, seed, window, faults, min_each, drain, args.workers, args.threads,
                     args.redis_port, args.keep_logs, args.publish_delay_ms)


# -- driving ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Progress:
    sent: dict[str, float] = dataclasses.field(default_factory=dict)
    finished: dict[str, float] = dataclasses.field(default_factory=dict)
    send_retries: int = 0
    worker_exits: int = 0  # workers that died without a kill fault and were restarted


def send(module: ModuleType, spec: WorkflowSpec, progress: Progress) -> None:
    """Publish one workflow, retrying while the injector has the broker or Redis down."""
    task = module.TASKS[spec.task]
    give_up = time.monotonic() + SEND_GIVE_UP_S
    delay = 0.1
    while True:
        try:
            task.send_with_options(args=spec.args, workflow_id=spec.workflow_id)
            break
        except RETRYABLE as exc:  # the same workflow_id again is idempotent
            if time.monotonic() > give_up:
                raise
            progress.send_retries += 1
            logger.info("send of %s failed (%s: %s); retrying in %.1f s", spec.workflow_id, type(exc).__name__,
                        str(exc)[:80], delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    progress.sent.setdefault(spec.workflow_id, time.monotonic())


def poll(state: Any, progress: Progress) -> None:
    """Note the workflows seen finished since the last poll (skipped while Redis is down)."""
    now = time.monotonic()
    for wid in [wid for wid in progress.sent if wid not in progress.finished]:
        try:
            meta = state.get_meta(wid)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return
        if meta is not None and meta.status in FINISHED:
            progress.finished[wid] = now


def drive(
    module: ModuleType, cluster: Cluster, specs: list[WorkflowSpec], config: RunConfig
) -> tuple[Progress, Injector]:
    """Publish at a steady rate while the faults play, then wait for the stragglers."""
    schedule = make_schedule(config.seed, config.window, config.faults, config.workers, config.min_each)
    injector = Injector(cluster, schedule)
    progress = Progress()
    state = module.app.state
    interval = config.window / len(specs)
    started = time.monotonic()
    injector.start()
    try:
        next_poll = 0.0
        while len(progress.sent) < len(specs) or not injector.join(0):
            due = min(len(specs), int((time.monotonic() - started) / interval) + 1)
            for spec in specs[len(progress.sent):due]:
                send(module, spec, progress)
            if time.monotonic() >= next_poll:
                poll(state, progress)
                progress.worker_exits += cluster.supervise()
                next_poll = time.monotonic() + POLL_S
            time.sleep(0.05)
        logger.info("window over after %.0f s: %d sent, %d finished, %d faults; draining (up to %.0f s)",
                    time.monotonic() - started, len(progress.sent), len(progress.finished), len(injector.done),
                    config.drain)
        deadline = time.monotonic() + config.drain
        while len(progress.finished) < len(specs) and time.monotonic() < deadline:
            time.sleep(POLL_S)
            poll(state, progress)
            progress.worker_exits += cluster.supervise()
    finally:
        injector.stop()
    return progress, injector


# -- verifying ---------------------------------------------------------------------------------
def with_retry(fn: Any, *args: Any, attempts: int = 20) -> Any:
    for attempt in range(attempts):
        try:
            return fn(*args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    return None


def stuck_detail(state: Any, record: dict[str, Any]) -> list[str]:
    """For each unfinished invocation: its status, steps and results, and (Redis) its sets and lease."""
    lines = []
    for invocation_id, inv in record["invocations"].items():
        if inv is None:
            lines.append(f"{invocation_id}: no record (a step names it, but it was never started)")
            continue
        if inv["status"] in FINISHED:
            continue
        line = f"{invocation_id} ({inv['task']}): status {inv['status']}, steps {sorted(inv['steps'])}, " \
               f"results {sorted(inv['results'])}"
        try:
            k, client = state.keys.invocation(invocation_id), state.client
            line += (
                f", waiting {sorted(client.smembers(k.waiting))}, resolved {sorted(client.smembers(k.resolved))}, "
                f"triggers {sorted(client.smembers(k.triggers))}, lease pttl {client.pttl(k.lock)} ms (-2: free)"
            )
        except AttributeError:  # the key layout changed: the journal view above still holds
            pass
        lines.append(line)
    return lines


@dataclasses.dataclass
class Verdict:
    lost: list[str] = dataclasses.field(default_factory=list)
    stuck: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    mismatched: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.stuck or self.mismatched)


def verify(state: Any, specs: list[WorkflowSpec], reference: dict[str, Any]) -> Verdict:
    verdict = Verdict()
    for spec in specs:
        wid = spec.workflow_id
        record = with_retry(collect, state, wid)
        if record is None:
            verdict.lost.append(wid)
        elif record["status"] not in FINISHED:
            verdict.stuck[wid] = with_retry(stuck_detail, state, record)
        else:
            problems = compare(reference[wid], record)
            if problems:
                verdict.mismatched[wid] = problems
    return verdict


def execution_counts(count_key: str, *, forget: bool = False) -> dict[str, str]:
    """The leaf bodies' own execution counts in the always-on Redis (deleted with ``forget``)."""
    client = redis.Redis.from_url(COUNT_URL, decode_responses=True)
    try:
        if forget:
            client.delete(count_key)
            return {}
        return client.hgetall(count_key)
    finally:
        client.close()


def duplicate_executions(counts: dict[str, str]) -> int:
    """Sum over leaf bodies of (executions - executions in a crash-free run), never negative."""
    return sum(max(0, int(n) - int(field.rsplit("#", 1)[1])) for field, n in counts.items())


def summary(config: RunConfig, injector: Injector, verdict: Verdict, duplicates: int, progress: Progress,
            dead: int) -> str:
    counts = injector.counts
    kinds = ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in KINDS)
    durations = [progress.finished[w] - progress.sent[w] for w in progress.finished if w in progress.sent]
    p50 = statistics.median(durations) if durations else float("nan")
    return (
        f"workflows {config.workflows} | faults {len(injector.done)} ({kinds}) | lost {len(verdict.lost)} | "
        f"mismatched {len(verdict.mismatched)} | stuck {len(verdict.stuck)} | "
        f"duplicate child executions {duplicates} | p50 workflow s {p50:.1f} | dead-lettered {dead} | "
        f"unexpected worker exits {progress.worker_exits}"
    )


def print_failures(verdict: Verdict, limit: int = 25) -> None:
    for wid in verdict.lost[:limit]:
        print(f"LOST {wid}: sent, but the chaos Redis has no record of it")
    for label, table in (("STUCK", verdict.stuck), ("MISMATCHED", verdict.mismatched)):
        for wid, lines in list(table.items())[:limit]:
            print(f"{label} {wid}")
            for line in lines[:12]:
                print(f"    {line}")


# -- the run -----------------------------------------------------------------------------------
def engine_digest() -> str:
    """A short digest of the engine's sources: workers restarted mid-run load what is on disk."""
    package = ROOT / "dramatiq_encore"
    sha = hashlib.sha256()
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.lua")]):
        sha.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()[:12]


def cluster_env(config: RunConfig, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENCORE_BROKER_URL": AMQP_URL,
        "ENCORE_STATE_URL": f"redis://127.0.0.1:{config.redis_port}/0",
        "ENCORE_KEY_PREFIX": f"chaos-{token}",
        "CHAOS_QUEUE": QUEUE,
        "CHAOS_COUNT_URL": COUNT_URL,
        "CHAOS_COUNT_KEY": f"chaos:{token}:executions",
        "CHAOS_PUBLISH_DELAY_MS": str(config.publish_delay_ms),
        "PYTHONPATH": str(ROOT),
    }


def load_driver_app(env: dict[str, str]) -> ModuleType:
    """Import chaos.app configured like the workers, and empty the run's queues."""
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ENCORE_", "CHAOS_"))})
    os.environ.pop("CHAOS_PUBLISH_DELAY_MS", None)  # only the workers' publishes are slowed
    module = importlib.import_module("chaos.app")
    module.app.state.get_meta("warm-up")  # first contact while Redis is surely up
    broker = module.app.broker
    broker.declare_queue(QUEUE, ensure=True)
    broker.flush(QUEUE)
    return module


def execute(config: RunConfig, workdir: Path, token: str) -> int:
    env = cluster_env(config, token)
    specs = plan_workload(config.seed, config.workflows)
    ref_process, ref_path = start_reference(specs, workdir, timeout=config.window + config.drain)
    cluster = Cluster(workdir, redis_port=config.redis_port, env=env, workers=config.workers, threads=config.threads)
    try:
        cluster.start_redis()
        module = load_driver_app(env)
        cluster.start_workers(QUEUE)
        progress, injector = drive(module, cluster, specs, config)
        verdict = verify(module.app.state, specs, finish_reference(ref_process, ref_path, timeout=60))
        dead = queue_depth(AMQP_URL, f"{QUEUE}.XQ")
        duplicates = duplicate_executions(execution_counts(env["CHAOS_COUNT_KEY"]))
    finally:
        cluster.close()
        purge(AMQP_URL, QUEUE)
        if ref_process.poll() is None:
            ref_process.kill()
        execution_counts(env["CHAOS_COUNT_KEY"], forget=True)
    for error in injector.errors:
        print(f"FAULT NOT APPLIED {error}")
    print_failures(verdict)
    print(summary(config, injector, verdict, duplicates, progress, dead))
    (workdir / "verdict.json").write_text(json.dumps(dataclasses.asdict(verdict), indent=1))
    return 1 if verdict.failed or injector.errors else 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("dramatiq").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _terminate)
    token = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix=f"chaos-s{config.seed}-"))
    engine = engine_digest()
    print(f"chaos: seed {config.seed} | workflows {config.workflows} | faults {config.faults} over "
          f"{config.window:.0f} s | workers {config.workers} | publish delay <= {config.publish_delay_ms} ms | "
          f"engine {engine} | logs {workdir}", flush=True)
    code = 2
    try:
        code = execute(config, workdir, token)
        if engine_digest() != engine:
            print("chaos: WARNING the engine's sources changed during the run; restarted workers ran the new code")
    except KeyboardInterrupt:
        print("chaos: interrupted; cluster stopped", file=sys.stderr)
        code = 130
    finally:
        if code == 0 and not config.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"chaos: logs kept in {workdir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
