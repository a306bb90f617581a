"""The chaos runner: workflows on a real cluster under injected faults, checked against a reference.

    python -m chaos.run --workflows 300 --seed 1     # long run
    python -m chaos.run --short                      # about 40 workflows, CI

It starts its own Redis (append-only file), or uses an existing one (``--redis-url``), and
three `dramatiq chaos.app` workers, publishes the workflows at a steady rate while the seeded
injector kills, disconnects, restarts and pauses things, waits for every workflow, then
compares each one with a crash-free embedded run of the same workflow ids. Exit code 0 only
when nothing was lost, stuck or mismatched. The options are in ``chaos/config.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
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

from dramatiq_encore.broker_config.settings import redact
from dramatiq_encore.errors import BrokerUnavailable, StateUnavailable
from dramatiq_encore.state.models import FINISHED

from .cluster import ROOT, Cluster, QueueInUse, consumer_count, delete_keys, purge, queue_depth
from .config import RunConfig, cluster_env, parse_config
from .faults import KINDS, Injector, make_schedule
from .reference import WorkflowSpec, collect, compare, finish_reference, plan_workload, start_reference

logger = logging.getLogger("chaos.run")

# dramatiq 2 renamed ConnectionError (the old name warns); 1.x only has the old one.
_BROKER_ERROR: type[Exception] = (
    getattr(dramatiq.errors, "BrokerConnectionError", None) or dramatiq.errors.ConnectionError
)
# The state Redis down: the engine raises StateUnavailable; redis-py's own errors come from
# the driver's own reads.
STATE_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, StateUnavailable)
RETRYABLE = (_BROKER_ERROR, BrokerUnavailable, pika.exceptions.AMQPError, *STATE_DOWN, OSError)
SEND_GIVE_UP_S = 120.0
POLL_S = 0.25


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
        except STATE_DOWN:
            return
        if meta is not None and meta.status in FINISHED:
            progress.finished[wid] = now


def drive(
    module: ModuleType, cluster: Cluster, specs: list[WorkflowSpec], config: RunConfig
) -> tuple[Progress, Injector]:
    """Publish at a steady rate while the faults play, then wait for the stragglers."""
    schedule = make_schedule(config.seed, config.window, config.faults, config.workers, config.min_each,
                             kinds=config.kinds)
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
        except STATE_DOWN:
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


def execution_counts(count_url: str, count_key: str, *, forget: bool = False) -> dict[str, str]:
    """The leaf bodies' own execution counts in the always-on Redis (deleted with ``forget``)."""
    client = redis.Redis.from_url(count_url, decode_responses=True)
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
    kinds = ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in KINDS if kind in config.kinds)
    if "redis" not in config.kinds:
        kinds += "; no redis faults: --redis-url is not the runner's Redis to restart"
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


def load_driver_app(env: dict[str, str], config: RunConfig) -> ModuleType:
    """Import chaos.app configured like the workers, and empty the run's queues (refused if in use)."""
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ENCORE_", "CHAOS_"))})
    os.environ.pop("CHAOS_PUBLISH_DELAY_MS", None)  # only the workers' publishes are slowed
    module = importlib.import_module("chaos.app")
    module.app.state.get_meta("warm-up")  # first contact while Redis is surely up
    broker = module.app.broker
    broker.declare_queue(config.queue, ensure=True)
    consumers = consumer_count(config.amqp_url, config.queue)
    if consumers:  # flushing would drop another run's messages, and its workers would take ours
        raise QueueInUse(f"queue {config.queue!r} on vhost {config.vhost!r} already has {consumers} consumers "
                           f"(another run?): pick another --queue")
    broker.flush(config.queue)
    return module


def execute(config: RunConfig, workdir: Path, token: str) -> int:
    env = cluster_env(config, token)
    specs = plan_workload(config.seed, config.workflows)
    ref_process, ref_path = start_reference(specs, workdir, timeout=config.window + config.drain)
    own_redis = None if config.redis_url else config.redis_port
    cluster = Cluster(workdir, redis_port=own_redis, env=env, workers=config.workers, threads=config.threads,
                      vhost=config.vhost)
    owns_queue = True
    try:
        cluster.start_redis()
        module = load_driver_app(env, config)
        cluster.start_workers(config.queue)
        progress, injector = drive(module, cluster, specs, config)
        verdict = verify(module.app.state, specs, finish_reference(ref_process, ref_path, timeout=60))
        dead = queue_depth(config.amqp_url, f"{config.queue}.XQ")
        duplicates = duplicate_executions(execution_counts(config.count_url, env["CHAOS_COUNT_KEY"]))
    except QueueInUse:
        owns_queue = False  # another run's queue: not ours to purge
        raise
    finally:
        cleanup(cluster, config, env, ref_process, purge_queue=owns_queue)
    for error in injector.errors:
        print(f"FAULT NOT APPLIED {error}")
    print_failures(verdict)
    print(summary(config, injector, verdict, duplicates, progress, dead))
    (workdir / "verdict.json").write_text(json.dumps(dataclasses.asdict(verdict), indent=1))
    return 1 if verdict.failed or injector.errors else 0


def cleanup(cluster: Cluster, config: RunConfig, env: dict[str, str], ref_process: Any, *, purge_queue: bool) -> None:
    """Stop the cluster and remove what the run left on the servers it shares: its queues' messages
    (unless another run uses them), its execution counts and, in a shared state Redis, the keys under
    its prefix (only those)."""
    cluster.close()
    if purge_queue:
        purge(config.amqp_url, config.queue)
    if ref_process.poll() is None:
        ref_process.kill()
    execution_counts(config.count_url, env["CHAOS_COUNT_KEY"], forget=True)
    if config.redis_url:
        deleted = delete_keys(config.redis_url, env["ENCORE_KEY_PREFIX"])
        logger.info("deleted the run's %d keys under %s: in %s", deleted, env["ENCORE_KEY_PREFIX"],
                    redact(config.redis_url))


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
    state = redact(config.redis_url) if config.redis_url else f"own on :{config.redis_port}"
    print(f"chaos: seed {config.seed} | workflows {config.workflows} | faults {config.faults} over "
          f"{config.window:.0f} s | workers {config.workers} | publish delay <= {config.publish_delay_ms} ms | "
          f"vhost {config.vhost} | queue {config.queue} | state Redis {state} | engine {engine} | logs {workdir}",
          flush=True)
    code = 2
    try:
        code = execute(config, workdir, token)
        if engine_digest() != engine:
            print("chaos: WARNING the engine's sources changed during the run; restarted workers ran the new code")
    except QueueInUse as exc:
        print(f"chaos: {exc}", file=sys.stderr)
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
