"""The chaos runner's options: which RabbitMQ vhost, queue and Redis servers a run uses.

A run can share its broker and Redis with other users: ``--amqp-url`` picks the vhost (the
``conn`` fault closes that vhost's connections only), ``--queue`` the queue, ``--count-url``
the Redis that counts executions and ``--redis-url`` an existing Redis for the workflow
state (then the runner cannot restart it, and the schedule has no ``redis`` faults).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re

import pika

from .cluster import ROOT
from .faults import KINDS, FaultKind

DESCRIPTION = "The chaos runner: workflows on a real cluster under injected faults, checked against a reference."
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_COUNT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE = "chaos"
DEFAULT_REDIS_PORT = 6390
# dramatiq's own rule for queue names (dramatiq.actor._queue_name_re); .DQ / .XQ are its own.
_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")


def vhost_of(amqp_url: str) -> str:
    """The vhost ``amqp_url`` connects to: its path, percent-decoded; ``/`` when empty or ``%2F``.

    Read through pika, which the workers' RabbitmqBroker and the driver connect with, so the
    ``conn`` fault targets exactly the vhost their connections are on.
    """
    return pika.URLParameters(amqp_url).virtual_host or "/"


def fault_kinds(shared_state: bool) -> tuple[FaultKind, ...]:
    """The fault kinds a run can apply: no ``redis`` restart on a Redis the runner does not own."""
    return tuple(kind for kind in KINDS if not (shared_state and kind == "redis"))


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
    redis_port: int  # the runner's own state Redis; unused with redis_url
    keep_logs: bool
    publish_delay_ms: int
    amqp_url: str = DEFAULT_AMQP_URL
    queue: str = DEFAULT_QUEUE
    count_url: str = DEFAULT_COUNT_URL
    redis_url: str | None = None  # an existing Redis for the workflow state (not restarted)

    @property
    def vhost(self) -> str:
        return vhost_of(self.amqp_url)

    @property
    def kinds(self) -> tuple[FaultKind, ...]:
        return fault_kinds(self.redis_url is not None)

    def state_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=DESCRIPTION)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="reproduces the workload and fault schedule")
    parser.add_argument("--short", action="store_true", help="about 40 workflows, every fault kind, under 2 minutes")
    parser.add_argument("--window", type=float, default=None, help="seconds of publishing and faults")
    parser.add_argument("--faults", type=int, default=None)
    parser.add_argument("--drain", type=float, default=None, help="seconds allowed to finish after the window")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keep-logs", action="store_true", help="keep worker logs even when the run passes")
    parser.add_argument("--publish-delay-ms", type=int, default=20,
                        help="workers delay each publish by up to this (widens the commit-to-publish gap); 0: off")
    shared = parser.add_argument_group("servers (RabbitMQ and Redis may be shared with other users)")
    shared.add_argument("--amqp-url", default=os.environ.get("CHAOS_AMQP_URL") or DEFAULT_AMQP_URL,
                        help="RabbitMQ of the workers and the driver; the conn fault closes only its vhost's "
                             f"connections (default: $CHAOS_AMQP_URL, else {DEFAULT_AMQP_URL.replace('%', '%%')})")
    shared.add_argument("--queue", default=DEFAULT_QUEUE,
                        help="the run's queue, refused if it has consumers (another run); default %(default)s")
    shared.add_argument("--count-url", default=os.environ.get("CHAOS_COUNT_URL") or DEFAULT_COUNT_URL,
                        help="Redis counting the leaf executions "
                             f"(default: $CHAOS_COUNT_URL, else {DEFAULT_COUNT_URL})")
    state = shared.add_mutually_exclusive_group()
    state.add_argument("--redis-port", type=int, default=DEFAULT_REDIS_PORT,
                       help="port of the runner's own state Redis (default %(default)s)")
    state.add_argument("--redis-url", default=None,
                       help="use this existing Redis for the workflow state (no redis faults)")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not _QUEUE_NAME.fullmatch(args.queue) or args.queue.endswith((".DQ", ".XQ")):
        parser.error(f"--queue {args.queue!r}: letters, digits, '.', '_', '-' (not first), no .DQ/.XQ suffix")
    if not args.amqp_url.startswith(("amqp://", "amqps://")):
        parser.error("--amqp-url: the scheme must be amqp:// or amqps://")
    for option, url in (("--count-url", args.count_url), ("--redis-url", args.redis_url)):
        if url is not None and not url.startswith(("redis://", "rediss://")):
            parser.error(f"{option}: the scheme must be redis:// or rediss://")


def parse_config(argv: list[str] | None) -> RunConfig:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    workflows = 40 if args.short else args.workflows
    window = args.window or (45.0 if args.short else max(60.0, 0.6 * workflows))
    min_each = 1 if args.short else 5
    faults = args.faults or (8 if args.short else max(32, round(window / 6)))
    drain = args.drain or (45.0 if args.short else 90.0)
    return RunConfig(workflows, seed, window, faults, min_each, drain, args.workers, args.threads,
                     args.redis_port, args.keep_logs, args.publish_delay_ms, amqp_url=args.amqp_url,
                     queue=args.queue, count_url=args.count_url, redis_url=args.redis_url)


def cluster_env(config: RunConfig, token: str) -> dict[str, str]:
    """The environment of the workers (and, minus the publish delay, of the driver)."""
    return {
        **os.environ,
        "ENCORE_BROKER_URL": config.amqp_url,
        "ENCORE_STATE_URL": config.state_url(),
        "ENCORE_KEY_PREFIX": key_prefix(token),
        "CHAOS_QUEUE": config.queue,
        "CHAOS_COUNT_URL": config.count_url,
        "CHAOS_COUNT_KEY": f"chaos:{token}:executions",
        "CHAOS_PUBLISH_DELAY_MS": str(config.publish_delay_ms),
        "PYTHONPATH": str(ROOT),
    }


def key_prefix(token: str) -> str:
    """The run's ENCORE_KEY_PREFIX: every state key of the run starts with ``<prefix>:``."""
    return f"chaos-{token}"
