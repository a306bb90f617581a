"""``encore list / show / result / signal / cancel / retry / fork / export``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Any

from pydantic_core import to_jsonable_python

from ..app import Encore
from ..errors import TaskError
from ..operate.tree import operations
from ..state.models import ACTIVE, FINISHED
from . import render
from .common import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    CliError,
    add_app_option,
    add_json_option,
    parse_json,
    shared_app,
)

STATUSES = (*ACTIVE, *FINISHED)
FOLLOW_EVERY_S = 0.5


def register(commands: Any) -> None:
    listing = commands.add_parser("list", help="list workflows, newest first")
    listing.add_argument("--status", choices=STATUSES, help="only workflows with this status")
    listing.add_argument("--type", dest="workflow_type", metavar="TASK", help="only workflows of this task")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50)")
    listing.add_argument("--cursor", help="the next page (printed on stderr after a full page)")
    for parser in (listing, _show(commands), _result(commands)):
        add_app_option(parser)
    add_json_option(listing)
    listing.set_defaults(handler=_cmd_list)

    signal = commands.add_parser("signal", help="send signal NAME with a JSON payload to a workflow")
    signal.add_argument("workflow_id", metavar="ID")
    signal.add_argument("name", metavar="NAME")
    signal.add_argument("payload", metavar="JSON", nargs="?", default="null", help="the payload (default null)")
    signal.set_defaults(handler=_cmd_signal)
    cancel = commands.add_parser("cancel", help="cancel a workflow (its cleanup steps still run)")
    cancel.add_argument("workflow_id", metavar="ID")
    cancel.add_argument("--reason", default="", help="recorded with the cancellation")
    cancel.set_defaults(handler=_cmd_cancel)
    retry = commands.add_parser("retry", help="resume a failed workflow from its failed step")
    retry.add_argument("workflow_id", metavar="ID")
    retry.set_defaults(handler=_cmd_retry)
    fork = commands.add_parser("fork", help="a new workflow that keeps steps 1..N-1 and runs from step N")
    fork.add_argument("workflow_id", metavar="ID")
    fork.add_argument("--from-step", type=int, required=True, metavar="N")
    fork.add_argument("--workflow-id", dest="new_id", metavar="NEW", help="the new workflow's id")
    fork.set_defaults(handler=_cmd_fork)
    export = commands.add_parser("export", help="print a workflow's history as JSON (for encore replay)")
    export.add_argument("workflow_id", metavar="ID")
    export.set_defaults(handler=_cmd_export)
    for parser in (signal, cancel, retry, fork, export):
        add_app_option(parser)


def _show(commands: Any) -> argparse.ArgumentParser:
    show: argparse.ArgumentParser = commands.add_parser(
        "show", help="a workflow's invocation tree, steps, values, data and error"
    )
    show.add_argument("workflow_id", metavar="ID")
    show.add_argument("--follow", action="store_true", help="redraw until the workflow finishes")
    add_json_option(show)
    show.set_defaults(handler=_cmd_show)
    return show


def _result(commands: Any) -> argparse.ArgumentParser:
    result: argparse.ArgumentParser = commands.add_parser(
        "result", help="print an invocation's result as JSON (exit 1 failed, 2 unfinished, 3 unknown)"
    )
    result.add_argument("invocation_id", metavar="ID")
    result.add_argument("--wait", type=float, metavar="SECONDS", help="wait up to SECONDS for it to finish")
    result.set_defaults(handler=_cmd_result)
    return result


def _print_json(value: Any, out: IO[str] | None = None) -> None:
    print(json.dumps(to_jsonable_python(value), indent=2, ensure_ascii=False), file=out or sys.stdout)


def _cmd_list(ns: argparse.Namespace) -> int:
    app = shared_app(ns.app)
    page = app.list_workflows(ns.status, ns.workflow_type, ns.limit, ns.cursor)
    if ns.json:
        _print_json([item.model_dump(mode="json") for item in page.items])
    else:
        print(render.workflows(page.items) if page.items else "no workflows")
    if page.cursor is not None:
        print(f"more: encore list --cursor {page.cursor}", file=sys.stderr)
    return EXIT_OK


def _cmd_show(ns: argparse.Namespace) -> int:
    app = shared_app(ns.app)
    while True:
        view = app.describe(ns.workflow_id)
        if ns.json:
            _print_json(view.model_dump(mode="json"))
        else:
            if ns.follow and sys.stdout.isatty():
                print("\x1b[2J\x1b[H", end="")  # clear the screen: redraw in place
            print(render.description(view))
        if not ns.follow or view.status not in ACTIVE:
            return EXIT_OK
        sys.stdout.flush()
        time.sleep(FOLLOW_EVERY_S)


def _cmd_result(ns: argparse.Namespace) -> int:
    app = shared_app(ns.app)
    try:
        return report_result(app, ns.invocation_id, ns.wait)
    finally:
        app.state.close()


def report_result(app: Encore, invocation_id: str, wait: float | None, out: IO[str] | None = None) -> int:
    """Print the result as JSON (0), the error type and message (1), the status (2), or that
    no start ever named the id (3)."""
    out = out or sys.stdout
    deadline = time.monotonic() + (wait or 0)
    while not _known(app, invocation_id) and time.monotonic() < deadline:
        time.sleep(0.05)  # a start just sent, that no worker took yet
    if not _known(app, invocation_id):
        note = operations(app.state).notes([invocation_id]).get(invocation_id)
        if note is not None:
            print(f"encore: error: {invocation_id!r} was never created: {note}", file=sys.stderr)
            return EXIT_ERROR
        print(
            f"encore: error: no invocation {invocation_id!r}: no start message has named it (or it finished "
            "longer ago than the retention, or no worker has taken its start yet); check the id with `encore list`",
            file=sys.stderr,
        )
        return EXIT_ERROR
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
    _print_json(value, out)
    return EXIT_OK


def _known(app: Encore, invocation_id: str) -> bool:
    return app.state.get_meta(invocation_id) is not None or app.state.lost_reason(invocation_id) is not None


def _cmd_signal(ns: argparse.Namespace) -> int:
    payload = parse_json(ns.payload, "JSON")
    app = shared_app(ns.app, with_broker=True)
    print(app.signal(ns.workflow_id, ns.name, payload, timeout=0))
    return EXIT_OK


def _cmd_cancel(ns: argparse.Namespace) -> int:
    app = shared_app(ns.app, with_broker=True)
    app.cancel(ns.workflow_id, reason=ns.reason, timeout=0)
    print(f"cancelling {ns.workflow_id}: it stops at its next step")
    return EXIT_OK


def _cmd_retry(ns: argparse.Namespace) -> int:
    app = shared_app(ns.app, with_broker=True)
    step = app.retry(ns.workflow_id)
    print(f"retrying {ns.workflow_id} from step {step}")
    return EXIT_OK


def _cmd_fork(ns: argparse.Namespace) -> int:
    if ns.from_step < 1:
        raise CliError(f"--from-step must be a step number (1 or more), got {ns.from_step}")
    app = shared_app(ns.app, with_broker=True)
    print(app.fork(ns.workflow_id, ns.from_step, ns.new_id))
    return EXIT_OK


def _cmd_export(ns: argparse.Namespace) -> int:
    app = shared_app(ns.app)
    print(app.export(ns.workflow_id).model_dump_json(indent=2))
    return EXIT_OK
