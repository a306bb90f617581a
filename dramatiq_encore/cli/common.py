"""What every ``encore`` command shares: exit codes, errors, importing user code, the app."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from types import ModuleType
from typing import Any, NoReturn

from dramatiq.brokers.stub import StubBroker

from ..actors.task import Task
from ..app import Encore
from ..errors import EncoreError
from ..state.backends.memory import MemoryState

EXIT_OK = 0
#: The invocation failed (result), a history diverges (replay, check), the demo's values differed.
EXIT_FAILED = 1
#: The invocation has not finished (result).
EXIT_PENDING = 2
#: The command could not run: bad arguments, an unknown id, import failure, configuration.
EXIT_ERROR = 3


class CliError(EncoreError):
    """A command that cannot run; its message is printed as one line on stderr."""


class Parser(argparse.ArgumentParser):
    # argparse exits with 2 on bad usage, but 2 means "not finished" for `encore result`.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


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


def parse_json(text: str, option: str, expected: type[Any] | None = None) -> Any:
    """``text`` as JSON (of the ``expected`` kind, when given), or an error that names the option."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option} is not valid JSON ({exc}): {text!r}") from None
    if expected is not None and not isinstance(value, expected):
        kind = "a JSON list, e.g. '[\"A-1\", 2]'" if expected is list else "a JSON object, e.g. '{\"priority\": 1}'"
        raise CliError(f"{option} must be {kind}; got {type(value).__name__} {text!r}")
    return value


def app_from_env(with_broker: bool = False) -> Encore:
    """An app on the state store named by ``ENCORE_STATE_URL``; with ``with_broker``, also on
    the broker of ``ENCORE_BROKER_URL`` (to send signals, cancels, retries), else a stub."""
    from ..broker_config import load_settings

    settings = load_settings()
    if settings.state_url is None:
        raise CliError(
            "ENCORE_STATE_URL is not set: workflows live in the state store (Redis) the workers use; "
            "set it, or pass --app MODULE to use that module's Encore app"
        )
    if with_broker and settings.broker_url is None:
        raise CliError("ENCORE_BROKER_URL is not set: this command sends a message to the workers' RabbitMQ; set it")
    return Encore(broker=None if with_broker else StubBroker(), settings=settings)


def shared_app(module: str | None, with_broker: bool = False) -> Encore:
    """The app a command works on: MODULE's (``--app``), else one from the environment. Its
    state must be shared with the workers (not in this process's memory)."""
    app = find_app(import_module(module)) if module else app_from_env(with_broker)
    if isinstance(app.state, MemoryState):
        raise CliError(
            "the app keeps its state in memory (ENCORE_STATE_URL unset): the workers' workflows are not "
            "visible here; set ENCORE_STATE_URL to the workers' Redis"
        )
    if with_broker and isinstance(app.broker, StubBroker):
        raise CliError("the app uses an in-process stub broker: set ENCORE_BROKER_URL to the workers' RabbitMQ")
    return app


def add_app_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", metavar="MODULE", help="use MODULE's Encore app (default: one from ENCORE_* settings)")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
