"""The HTML pages: the list, a workflow's page, and the login form."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import EncoreError
from .api import Api, BadRequest, ListQuery, error_status, read_form
from .auth import READ_ONLY, Auth, same_origin
from .render import Pages
from .timeline import build_timeline

if TYPE_CHECKING:
    from ..app import Encore

DONE = {"cancel": "Cancellation requested.", "retry": "Retry started."}


def safe_next(target: str) -> str:
    """Only a path on this site: ``/...`` but not ``//host`` nor ``/\\host``."""
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


class Site:
    """The pages' endpoints over one app."""

    def __init__(self, app: Encore, auth: Auth, pages: Pages, api: Api) -> None:
        self.app = app
        self.auth = auth
        self.pages = pages
        self.api = api

    def render(self, request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
        context = {"viewer": self.auth.viewer(request), "path": quote(request.url.path, safe="/"), **context}
        return self.pages.render(name, context, status_code)

    def message(self, request: Request, status: int, message: str) -> Response:
        return self.render(request, "message.html", {"status": status, "message": message}, status)

    async def index(self, request: Request) -> Response:
        try:
            q = ListQuery.parse(request.query_params)
            page = await self.api.call(
                self.app.list_workflows, status=q.status, workflow_type=q.workflow_type, limit=q.limit, cursor=q.cursor
            )
        except BadRequest as exc:
            return self.message(request, 400, str(exc))
        except EncoreError as exc:
            return self.message(request, 400 if error_status(exc) == 409 else error_status(exc), str(exc))
        context = {"page": page, "q": q, "now": dt.datetime.now(dt.UTC)}
        return self.render(request, "list.html", context)

    async def workflow(self, request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        try:
            description = await self.api.call(self.app.describe, workflow_id)
        except EncoreError as exc:
            return self.message(request, error_status(exc), str(exc))
        now = dt.datetime.now(dt.UTC)
        context = {
            "wf": description,
            "timeline": build_timeline(description, now),
            "now": now,
            "done": DONE.get(request.query_params.get("done", "")),
        }
        return self.render(request, "workflow.html", context)

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", {"next": safe_next(request.query_params.get("next", "/"))})

    async def login(self, request: Request) -> Response:
        if not self.auth.enabled:
            return self.message(request, 403, READ_ONLY)
        if not same_origin(request):
            return self.message(request, 403, "cross-site request refused")
        try:
            form = await read_form(request)
        except BadRequest as exc:
            return self.message(request, 400, str(exc))
        target = safe_next(form.get("next", "/"))
        if not self.auth.check_token(form.get("token", "")):
            context = {"next": target, "failed": True}
            return self.render(request, "login.html", context, status_code=401)
        response = RedirectResponse(target, status_code=303)
        self.auth.set_cookie(request, response)
        return response

    async def logout(self, request: Request) -> Response:
        if not same_origin(request):
            return self.message(request, 403, "cross-site request refused")
        response = RedirectResponse("/", status_code=303)
        self.auth.clear_cookie(response)
        return response
