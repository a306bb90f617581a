"""The JSON API: listings and descriptions for anyone, cancel and retry for the token's holder.

``GET /api/workflows`` returns a :class:`~dramatiq_encore.views.WorkflowPage`,
``GET /api/workflows/{id}`` a :class:`~dramatiq_encore.views.WorkflowDescription`; errors are
``{"error": "..."}`` with 400 (bad query), 404 (unknown workflow), 409 (the action does not
apply, e.g. retrying a workflow that has not failed), 401/403 (not allowed) or 503.
The action endpoints also take the pages' form posts (session cookie plus CSRF token) and
answer those with a redirect to the workflow's page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..errors import BrokerUnavailable, EncoreError, StateUnavailable, UnknownWorkflow
from .auth import Auth
from .render import STATUSES, Pages, workflow_url

if TYPE_CHECKING:
    from ..app import Encore

MAX_LIMIT = 500
MAX_FORM_BYTES = 8192
FORM_TYPE = "application/x-www-form-urlencoded"
CANCEL_REASON = "cancelled from the dashboard"


class BadRequest(ValueError):
    """A query or form the dashboard refuses (answered with 400)."""


@dataclasses.dataclass(frozen=True)
class ListQuery:
    """The list's filters and page, from a query string."""

    status: str | None = None
    workflow_type: str | None = None
    limit: int = 50
    cursor: str | None = None

    @classmethod
    def parse(cls, params: Any) -> ListQuery:
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise BadRequest(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        raw_limit = params.get("limit") or "50"
        try:
            limit = int(raw_limit)
        except ValueError:
            raise BadRequest(f"limit must be a whole number, got {raw_limit!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        workflow_type = params.get("type") or None
        cursor = params.get("cursor") or None
        if len(workflow_type or "") > 500 or len(cursor or "") > 1000:
            raise BadRequest("type or cursor too long")
        return cls(status, workflow_type, limit, cursor)


def error_status(exc: EncoreError) -> int:
    if isinstance(exc, UnknownWorkflow):
        return 404
    if isinstance(exc, BrokerUnavailable | StateUnavailable):
        return 503
    return 409


def error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form body (the pages' posts); other bodies read as empty."""
    if not request.headers.get("content-type", "").startswith(FORM_TYPE):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest("form too large")
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def is_form_post(request: Request) -> bool:
    return "authorization" not in request.headers and request.headers.get("content-type", "").startswith(FORM_TYPE)


class Api:
    """The API's endpoints over one app."""

    def __init__(self, app: Encore, auth: Auth, pages: Pages) -> None:
        self.app = app
        self.auth = auth
        self.pages = pages

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(function, *args, **kwargs)

    async def list_workflows(self, request: Request) -> Response:
        try:
            q = ListQuery.parse(request.query_params)
            page = await self.call(
                self.app.list_workflows, status=q.status, workflow_type=q.workflow_type, limit=q.limit, cursor=q.cursor
            )
        except BadRequest as exc:
            return error(400, str(exc))
        except EncoreError as exc:
            return error(400 if error_status(exc) == 409 else error_status(exc), str(exc))
        return JSONResponse(page.model_dump(mode="json"))

    async def describe(self, request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        try:
            description = await self.call(self.app.describe, workflow_id)
        except EncoreError as exc:
            return error(error_status(exc), str(exc))
        return JSONResponse(description.model_dump(mode="json"))

    async def cancel(self, request: Request) -> Response:
        return await self._act(request, "cancel")

    async def retry(self, request: Request) -> Response:
        return await self._act(request, "retry")

    async def _act(self, request: Request, action: str) -> Response:
        workflow_id: str = request.path_params["workflow_id"]
        form_post = is_form_post(request)
        try:
            form = await read_form(request)
        except BadRequest as exc:
            return self._refuse(request, form_post, 400, str(exc))
        decision = self.auth.authorize_action(request, form.get("csrf_token") or request.headers.get("x-csrf-token"))
        if not decision.allowed:
            return self._refuse(request, form_post, decision.status, decision.message)
        try:
            outcome = await self._perform(action, workflow_id, form.get("reason", ""))
        except EncoreError as exc:
            return self._refuse(request, form_post, error_status(exc), str(exc))
        if form_post:
            return RedirectResponse(f"{workflow_url(workflow_id)}?done={action}", status_code=303)
        return JSONResponse({"workflow_id": workflow_id, "action": action, **outcome})

    async def _perform(self, action: str, workflow_id: str, reason: str) -> dict[str, Any]:
        # describe() first: an unknown id is a 404 at once (cancel would wait for it to appear).
        await self.call(self.app.describe, workflow_id)
        if action == "cancel":
            await self.call(self.app.cancel, workflow_id, reason[:500] or CANCEL_REASON)
            return {"requested": True}
        step = await self.call(self.app.retry, workflow_id)
        return {"resumed_from_step": step}

    def _refuse(self, request: Request, form_post: bool, status: int, message: str) -> Response:
        if not form_post:
            return error(status, message)
        context = {"viewer": self.auth.viewer(request), "status": status, "message": message}
        return self.pages.render("message.html", context, status_code=status)
