"""``encore demo``, ``encore worker`` and ``encore start``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from dramatiq.brokers.stub import StubBroker

from ..identity import check_workflow_id
from .common import EXIT_OK, CliError, find_task, parse_json

WORKER_HELP = """\
usage: encore worker MODULE [MODULE...] [-p PROCESSES] [-t THREADS] [dramatiq options]

Runs `python -m dramatiq` with the same arguments: each MODULE is imported and its
Encore app's broker (set from ENCORE_BROKER_URL, or given to Encore(broker=...)) is
served. -p/--processes and -t/--threads and every other option are dramatiq's; its help
follows.
"""

#: Set for the worker processes `encore worker` starts: an app that falls back to the
#: embedded stub broker in one of them warns (see ``Encore.__init__``).
WORKER_ENV = "ENCORE_WORKER_CLI"


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="interrupt an order workflow at a step, resume it, compare its values")
    demo.add_argument(
        "--interrupt-at", type=int, default=2, choices=range(1, 5), metavar="N", help="step 1-4 (default 2)"
    )
    demo.set_defaults(handler=_cmd_demo)

    # Listed for --help only: main() hands `worker` arguments to dramatiq untouched.
    commands.add_parser("worker", help="run dramatiq workers for MODULE... (a thin front for `python -m dramatiq`)")

    start = commands.add_parser("start", help="start a root workflow and print its invocation id")
    start.add_argument("target", metavar="module:task", help="e.g. examples.order_processing.run:handle_order")
    start.add_argument("--args", default="[]", help="positional arguments as a JSON list (default [])")
    start.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object (default {})")
    start.add_argument("--workflow-id", help="make the start idempotent under this id")
    start.set_defaults(handler=_cmd_start)


def _cmd_demo(ns: argparse.Namespace) -> int:
    from .. import demo

    return demo.main(ns.interrupt_at)


def dramatiq_command(args: Sequence[str]) -> list[str]:
    """The command ``encore worker ARGS`` becomes."""
    return [sys.executable, "-m", "dramatiq", *args]


def cmd_worker(args: list[str]) -> int:
    if not args:
        raise CliError("encore worker needs at least one module, e.g. encore worker examples.order_processing.run")
    if "-h" in args or "--help" in args:
        sys.stdout.write(WORKER_HELP + "\n")
        args = ["--help"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[WORKER_ENV] = "1"
    # exec, not a child process: signals from a supervisor (SIGTERM, SIGINT) reach dramatiq
    # directly and its exit code is ours.
    command = dramatiq_command(args)
    os.execv(command[0], command)


def _cmd_start(ns: argparse.Namespace) -> int:
    args = parse_json(ns.args, "--args", list)
    kwargs = parse_json(ns.kwargs, "--kwargs", dict)
    if ns.workflow_id is not None:
        check_workflow_id(ns.workflow_id)  # before importing: the user's module may connect to services
    task = find_task(ns.target)
    broker = task.actor.broker
    if isinstance(broker, StubBroker):
        raise CliError(
            f"{ns.target} uses an in-process stub broker (embedded mode): the workflow would die with this "
            "command. Set ENCORE_BROKER_URL and ENCORE_STATE_URL so that `encore worker` processes run it."
        )
    try:
        invocation = task.send_with_options(args=args, kwargs=kwargs, workflow_id=ns.workflow_id)
    finally:
        broker.close()
    print(invocation.invocation_id)
    return EXIT_OK
