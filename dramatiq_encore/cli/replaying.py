"""``encore replay``, ``encore check`` and ``encore dashboard``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..operate.replayer import Divergence, check, load_history, replay
from ..state.backends.memory import MemoryState
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    add_app_option,
    add_json_option,
    app_from_env,
    find_app,
    import_module,
)


def register(commands: Any) -> None:
    rep = commands.add_parser(
        "replay", help="re-execute a recorded history against the current code (exit 1: diverges)"
    )
    rep.add_argument("--module", required=True, metavar="MODULE", help="the module that declares the workflow's tasks")
    source = rep.add_mutually_exclusive_group(required=True)
    source.add_argument("workflow_id", metavar="ID", nargs="?", help="a workflow in the store (ENCORE_STATE_URL)")
    source.add_argument("--file", metavar="HISTORY", help="a history `encore export` wrote")
    add_json_option(rep)
    rep.set_defaults(handler=_cmd_replay)

    chk = commands.add_parser("check", help="would any unfinished workflow diverge on this code? (exit 1: yes)")
    chk.add_argument("--module", required=True, metavar="MODULE", help="the module with the code to deploy")
    chk.add_argument("--type", dest="workflow_type", metavar="TASK", help="only workflows of this task")
    add_json_option(chk)
    chk.set_defaults(handler=_cmd_check)

    dash = commands.add_parser("dashboard", help="serve the web dashboard (actions need ENCORE_DASHBOARD_TOKEN)")
    dash.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    dash.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    add_app_option(dash)
    dash.set_defaults(handler=_cmd_dashboard)


def _module_app(module: str) -> Any:
    """The app of the module that declares the tasks (the code to replay)."""
    return find_app(import_module(module))


def _reader(app: Any) -> Any:
    """``app``, or, when it keeps its state in memory, an app on the environment's store with
    its tasks (a module that runs embedded when imported alone)."""
    if not isinstance(app.state, MemoryState):
        return app
    reader = app_from_env()
    reader.tasks = app.tasks
    return reader


def _report(divergences: list[Divergence], as_json: bool, clean: str) -> int:
    if as_json:
        print(json.dumps([d.__dict__ for d in divergences], indent=2, ensure_ascii=False))
    elif not divergences:
        print(clean)
    for divergence in divergences if not as_json else ():
        print(f"diverges: {divergence}")
    return EXIT_FAILED if divergences else EXIT_OK


def _cmd_replay(ns: argparse.Namespace) -> int:
    app = _module_app(ns.module)
    history = load_history(ns.file) if ns.file is not None else _reader(app).export(ns.workflow_id)
    divergences = replay(app, history)[:1]  # the first divergence
    return _report(divergences, ns.json, "replays cleanly")


def _cmd_check(ns: argparse.Namespace) -> int:
    app = _reader(_module_app(ns.module))
    divergences = check(app, ns.workflow_type)
    return _report(divergences, ns.json, "every unfinished workflow replays cleanly on this code")


def _cmd_dashboard(ns: argparse.Namespace) -> int:
    try:
        from ..dashboard import serve
    except ImportError as exc:
        raise CliError(f"the dashboard needs its extra: pip install 'dramatiq-encore[dashboard]' ({exc})") from None
    app = _reader(find_app(import_module(ns.app))) if ns.app else app_from_env(with_broker=_has_broker())
    serve(app, host=ns.host, port=ns.port)
    return EXIT_OK


def _has_broker() -> bool:
    from ..broker_config import load_settings

    return load_settings().broker_url is not None
