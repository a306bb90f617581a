"""The ``encore`` command: demo, workers, starting workflows, and operating them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from ..errors import EncoreError
from . import operate, replaying, run
from .common import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_PENDING, CliError, Parser, app_from_env
from .operate import report_result
from .run import dramatiq_command

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PENDING",
    "CliError",
    "app_from_env",
    "dramatiq_command",
    "main",
    "report_result",
]

DESCRIPTION = """\
Durable deterministic-replay workflows on Dramatiq.

  encore demo [--interrupt-at N]                  crash a workflow at step N, resume it, compare
  encore worker MODULE [MODULE...] [-p N] [-t N]  run dramatiq workers (any dramatiq option)
  encore start module:task --args '[...]'         start a root workflow, print its id
  encore list [--status S] [--type T]             workflows, newest first
  encore show ID [--follow]                       a workflow's tree of steps, values, data, error
  encore result ID [--wait S]                     an invocation's result as JSON
  encore signal ID NAME JSON | cancel ID          talk to a running workflow
  encore retry ID | fork ID --from-step N         run a workflow again from a step
  encore export ID > history.json                 its history, for encore replay
  encore replay --module M (ID | --file F)        does the history replay on this code?
  encore check --module M                         would any unfinished workflow diverge?
  encore dashboard [--host H] [--port P]          the web dashboard

Commands that read workflows use ENCORE_STATE_URL (or --app MODULE's app); signal, cancel,
retry and fork also send to ENCORE_BROKER_URL. --json prints data for scripts.
Exit codes: 0 success; 1 the invocation failed (result), a history diverges (replay,
check), or the demo's values differed; 2 the invocation has not finished (result); 3 the
command could not run (bad arguments, an unknown id, import failure, configuration).
Errors are one line on stderr.
"""


def _version() -> str:
    try:
        return metadata.version("dramatiq-encore")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> Parser:
    parser = Parser(prog="encore", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"encore (dramatiq-encore) {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.register(commands)
    operate.register(commands)
    replaying.register(commands)
    return parser


def _fail(message: str) -> int:
    print(f"encore: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``encore`` command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # pika logs every failed connection attempt with a traceback; the one-line error that
    # follows already names the broker and the cause.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        if args[:1] == ["worker"]:
            return run.cmd_worker(args[1:])
        namespace = build_parser().parse_args(args)
        handler: Callable[[argparse.Namespace], int] = namespace.handler
        return handler(namespace)
    except EncoreError as exc:  # CliError included
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a broker or store that cannot be reached, a bug: one line, no traceback
        return _fail(f"{type(exc).__name__}: {exc}")
