"""The replay engine is pure: neither it nor any project module it imports touches I/O.

Walks the imports of ``dramatiq_encore.actors.replay`` with ``ast``, module by module,
following the project's own modules (package ``__init__`` files aside, as they only gather
names for users): none may import dramatiq, pika or redis, the runtime or a state backend.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "dramatiq_encore"
ENGINE = "dramatiq_encore.actors.replay"
FORBIDDEN_LIBRARIES = ("dramatiq", "pika", "redis")
FORBIDDEN_MODULES = (
    "dramatiq_encore.actors.runtime",
    "dramatiq_encore.actors.fast",
    "dramatiq_encore.actors.mailbox",
    "dramatiq_encore.actors.outbox",
    "dramatiq_encore.state.backend",
    "dramatiq_encore.state.backends",
    "dramatiq_encore.app",
)


def _path(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    file = PACKAGE / relative.with_suffix(".py")
    return file if file.exists() else PACKAGE / relative / "__init__.py"


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports, at any depth of its code (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(_path(module).read_text())
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # types only: never imported at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if _path_exists(f"{base}.{alias.name}"))
    return found


def _path_exists(module: str) -> bool:
    return module.startswith("dramatiq_encore") and (_path(module).exists())


def _closure(start: str) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen[module] = _imports(module)
        for name in seen[module]:
            if name.startswith("dramatiq_encore.") and _path_exists(name) and _path(name).name != "__init__.py":
                todo.append(name)
    return seen


def test_the_engine_and_what_it_imports_touch_no_broker_store_or_runtime() -> None:
    closure = _closure(ENGINE)
    assert "dramatiq_encore.actors.steps" in closure and "dramatiq_encore.actors.pass_state" in closure
    offenders = {
        module: sorted(
            name for name in names
            if name.split(".")[0] in FORBIDDEN_LIBRARIES or name.startswith(FORBIDDEN_MODULES)
        )
        for module, names in closure.items()
    }
    assert {module: names for module, names in offenders.items() if names} == {}
