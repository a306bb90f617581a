"""Griffe extension: render the Sphinx roles and the ``>>>`` examples of the package's docstrings.

The docstrings say :class:`~dramatiq_encore.errors.TaskError`, :meth:`gather` and the like
(they read well in ``help()``); Markdown would print those roles as they are. This turns each
into an optional cross-reference: a link when the target is on a reference page, plain code
otherwise (no warning either way, so ``mkdocs build --strict`` stays meaningful). The
docstrings' interactive examples (``>>>`` and ``...`` lines, as ``help()`` shows them) would
read as nested Markdown quotes: each run of them becomes a Python code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|attr|mod|exc|data|obj):`(?P<target>[^`]+)`")
PROMPT = re.compile(r"^(?P<indent>\s*)(?:>>>|\.\.\.)(?: |$)")


def _fence_examples(text: str) -> list[tuple[bool, str]]:
    """``text`` cut into (is_code, part): each run of ``>>>``/``...`` lines a fenced block."""
    parts: list[tuple[bool, list[str]]] = []
    for line in text.splitlines():
        prompt = PROMPT.match(line)
        code = prompt is not None
        if not parts or parts[-1][0] != code:
            parts.append((code, []))
        parts[-1][1].append(line)
    out = []
    for code, lines in parts:
        if code:
            indent = PROMPT.match(lines[0])["indent"]  # type: ignore[index]
            out.append((True, "\n".join(["", f"{indent}```python", *lines, f"{indent}```", ""])))
        else:
            out.append((False, "\n".join(lines)))
    return out


def _title(target: str) -> str:
    if target.startswith("~"):
        return target.lstrip("~.").rsplit(".", 1)[-1]
    return target.lstrip(".")


def _resolve(obj: griffe.Object, target: str) -> str | None:
    path = target.lstrip("~")
    if path.startswith("."):  # relative to the module's package, as Sphinx reads it
        package = obj.module.path.rsplit(".", 1)[0] if not obj.module.is_package else obj.module.path
        return f"{package}{path}"
    head, _, rest = path.partition(".")
    if head == obj.package.name:
        return path
    scope: griffe.Object | None = obj if obj.is_class or obj.is_module else obj.parent
    while scope is not None:  # a sibling method, a name the module imports, ...
        if head in scope.members:
            found = scope.members[head]
            full = found.target_path if isinstance(found, griffe.Alias) else found.path
            return f"{full}.{rest}" if rest else full
        scope = scope.parent
    return None


def _rewrite(obj: griffe.Object) -> None:
    if obj.docstring is not None:

        def link(match: re.Match[str]) -> str:
            target = match["target"]
            title = f"<code>{_title(target)}</code>"
            path = _resolve(obj, target)
            return title if path is None else f'<autoref identifier="{path}" optional>{title}</autoref>'

        parts = _fence_examples(obj.docstring.value)
        obj.docstring.value = "\n".join(part if code else ROLE.sub(link, part) for code, part in parts)
    for member in obj.members.values():
        if not isinstance(member, griffe.Alias):
            _rewrite(member)


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _rewrite(pkg)
