"""The pages' Jinja2 environment: autoescaped templates and the filters they use.

Every value reaches the HTML through autoescaping: the filters here return plain strings,
never ``Markup``, so a ``<script>`` in a workflow id or in its data shows as text.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from .timeline import format_seconds, utc

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
FINISHED = ("succeeded", "failed", "cancelled", "lost")
STATUSES = ("pending", "running", "suspended", "succeeded", "failed", "cancelled", "lost")


def pretty(value: Any) -> str:
    """A JSON value as indented text (autoescaped by the template, like any other string)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def short(value: Any, limit: int = 80) -> str:
    """A JSON value on one line, cut at ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def when(moment: dt.datetime | None) -> str:
    """An aware time as ``2024-05-01 12:00:03.250 UTC``; ``—`` for none."""
    if moment is None:
        return "—"
    return utc(moment).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def seconds(value: float | None) -> str:
    return "—" if value is None else format_seconds(value)


def elapsed(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """How long from ``start`` to ``end`` (to now when ``end`` is None)."""
    if start is None:
        return "—"
    finish = utc(end) if end is not None else dt.datetime.now(dt.UTC)
    return format_seconds(max(0.0, (finish - utc(start)).total_seconds()))


def pathpart(text: str) -> str:
    """``text`` percent-encoded whole, for one path segment (ids may hold ``?``, ``#``, ``%``)."""
    return quote(text, safe="")


def workflow_url(workflow_id: str) -> str:
    """The workflow page's path."""
    return "/workflows/" + pathpart(workflow_id)


def query(**params: Any) -> str:
    """``?a=1&b=2`` from the parameters that are set (the list page's links)."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else "?"


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pretty=pretty, short=short, when=when, seconds=seconds, workflow_url=workflow_url, pathpart=pathpart
    )
    env.globals.update(elapsed=elapsed, query=query, statuses=STATUSES, finished=FINISHED)
    return env


class Pages:
    """Renders the templates into responses, with the security headers every page carries."""

    def __init__(self) -> None:
        self.env = make_environment()

    def render(self, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code)
