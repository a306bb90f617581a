"""The ``encore`` command: demo, workers, starting workflows and reading their results."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import IO, Any, NoReturn

from dramatiq.brokers.stub import StubBroker
from pydantic_core import to_jsonable_python

from .actors.task import Task
from .app import Encore
from .errors import EncoreError, TaskError
from .identity import check_workflow_id
from .state.backends.memory import MemoryState
from .state.models import FINISHED

DESCRIPTION = """\
Durable deterministic-replay workflows on Dramatiq.

  encore demo [--interrupt-at N]                  crash a workflow at step N, resume it, compare
  encore worker MODULE [MODULE...] [-p N] [-t N]  run dramatiq workers (any dramatiq option)
  encore start module:task --args '[...]'         start a root workflow, print its id
  encore result ID [--wait S] [--app MODULE]      print an invocation's result as JSON

Workers, start and result talk to RabbitMQ and Redis named by ENCORE_BROKER_URL and
ENCORE_STATE_URL. Exit codes: 0 success; 1 the invocation failed (result) or the demo's
values differed; 2 the invocation has not finished (result); 3 the command could not
run (bad arguments, import failure, configuration). Errors are one line on stderr.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_PENDING = 2
EXIT_ERROR = 3

WORKER_HELP = """\
usage: encore worker MODULE [MODULE...] [-p PROCESSES] [-t THREADS] [dramatiq options]

Runs `python -m dramatiq` with the same arguments: each MODULE is imported and its
Encore app's broker (set from ENCORE_BROKER_URL) is served. -p/--processes and
-t/--threads and every other option are dramatiq's; its help follows.
"""

_EMBEDDED_WORKER_WARNING = (
    "encore worker: warning: ENCORE_BROKER_URL is not set, so apps built with Encore() use an "
    "in-process stub broker and these workers receive nothing sent from other processes"
)


class CliError(EncoreError):
    """A command that cannot run; its message is printed as one line on stderr."""


class _Parser(argparse.ArgumentParser):
    # argparse exits with 2 on bad usage, but 2 means "not finished" for `encore result`.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


# -- importing user code ------------------------------------------------------------------
def import_module(name: str) -> ModuleType:
    """Import ``name`` the way the dramatiq CLI does: relative to the current directory."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CliError(
                f"cannot import module {name!r}: {exc} (is it on the path, relative to {os.getcwd()}?)"
            ) from None
        raise CliError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise CliError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None


def find_task(target: str) -> Task[..., Any]:
    """The task named by ``module:task`` (the attribute may be dotted: ``module:obj.task``)."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise CliError(f"expected module:task, e.g. examples.order_processing.run:handle_order; got {target!r}")
    found: Any = import_module(module_name)
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise CliError(f"module {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not isinstance(found, Task):
        raise CliError(f"{target!r} is a {type(found).__name__}, not an encore task (declare it with @app.task)")
    return found


def find_app(module: ModuleType) -> Encore:
    """The first :class:`Encore` instance among the module's attributes."""
    for value in vars(module).values():
        if isinstance(value, Encore):
            return value
    raise CliError(f"module {module.__name__!r} defines no Encore instance (expected e.g. `app = Encore()`)")


# -- argument parsing -----------------------------------------------------------------------
def parse_json(text: str, option: str, expected: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """``text`` as JSON of the ``expected`` kind, or an error that names the option."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option} is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, expected):
        kind = "a JSON list, e.g. '[\"A-1\", 2]'" if expected is list else "a JSON object, e.g. '{\"priority\": 1}'"
        raise CliError(f"{option} must be {kind}; got {type(value).__name__} {text!r}")
    return value


def _build_parser() -> _Parser:
    parser = _Parser(prog="encore", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    result = commands.add_parser("result", help="print an invocation's result as JSON (exit 1 failed, 2 unfinished)")
    result.add_argument("invocation_id", metavar="ID")
    result.add_argument("--wait", type=float, metavar="SECONDS", help="wait up to SECONDS for it to finish")
    result.add_argument("--app", metavar="MODULE", help="import MODULE and use its Encore app (so result types load)")
    result.set_defaults(handler=_cmd_result)
    return parser


# -- commands -------------------------------------------------------------------------------
def _cmd_demo(ns: argparse.Namespace) -> int:
    from . import demo

    return demo.main(ns.interrupt_at)


def dramatiq_command(args: Sequence[str]) -> list[str]:
    """The command ``encore worker ARGS`` becomes."""
    return [sys.executable, "-m", "dramatiq", *args]


def _cmd_worker(args: list[str]) -> int:
    if not args:
        raise CliError("encore worker needs at least one module, e.g. encore worker examples.order_processing.run")
    if "-h" in args or "--help" in args:
        sys.stdout.write(WORKER_HELP + "\n")
        args = ["--help"]
    elif not os.environ.get("ENCORE_BROKER_URL"):
        print(_EMBEDDED_WORKER_WARNING, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
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


def app_from_env() -> Encore:
    """An app that reads results from the state store named by ``ENCORE_STATE_URL``.

    It gets a stub broker: reading a result needs no broker connection.
    """
    from .broker_config import load_settings

    settings = load_settings()
    if settings.state_url is None:
        raise CliError(
            "ENCORE_STATE_URL is not set: results live in the state store (Redis) the workers use; "
            "set it, or pass --app MODULE to use that module's Encore app"
        )
    return Encore(broker=StubBroker(), settings=settings)


def _cmd_result(ns: argparse.Namespace) -> int:
    app = find_app(import_module(ns.app)) if ns.app else app_from_env()
    if isinstance(app.state, MemoryState):
        raise CliError(
            "the app keeps its state in memory (ENCORE_STATE_URL unset): results of other processes are "
            "not visible here; set ENCORE_STATE_URL to the workers' Redis"
        )
    try:
        return report_result(app, ns.invocation_id, ns.wait)
    finally:
        app.state.close()


def report_result(app: Encore, invocation_id: str, wait: float | None, out: IO[str] | None = None) -> int:
    """Print the result as JSON (0), the error type and message (1) or the status (2)."""
    out = out or sys.stdout
    invocation = app.get_invocation(invocation_id)
    try:
        if wait is None and invocation.status not in FINISHED:
            print(invocation.status, file=out)
            return EXIT_PENDING
        value = invocation.result if wait is None else invocation.wait(timeout=wait)
    except TimeoutError:
        print(invocation.status, file=out)
        return EXIT_PENDING
    except TaskError as exc:
        print(f"{exc.error_type}: {exc.message}", file=out)
        return EXIT_FAILED
    print(json.dumps(to_jsonable_python(value), indent=2), file=out)
    return EXIT_OK


# -- entry point ----------------------------------------------------------------------------
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
            return _cmd_worker(args[1:])
        namespace = _build_parser().parse_args(args)
        handler: Callable[[argparse.Namespace], int] = namespace.handler
        return handler(namespace)
    except EncoreError as exc:  # CliError included
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a broker or store that cannot be reached, a bug: one line, no traceback
        return _fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
