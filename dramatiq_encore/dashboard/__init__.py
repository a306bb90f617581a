"""A small web dashboard over an :class:`~dramatiq_encore.Encore` app: pages and a JSON API.

>>> from dramatiq_encore.dashboard import create_app, serve
>>> serve(app, host="127.0.0.1", port=8080)        # what ``encore dashboard`` runs

Reading is open to whoever reaches the port; cancel and retry need the dashboard token
(``ENCORE_DASHBOARD_TOKEN``, or ``token=``): without one the dashboard is read-only.
Needs the ``dashboard`` extra (starlette, uvicorn, jinja2).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import Api, error
from .auth import Auth
from .pages import Site
from .render import STATIC, Pages

if TYPE_CHECKING:
    from ..app import Encore

__all__ = ["create_app", "serve"]

logger = logging.getLogger(__name__)

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds the CSP and friends to every HTTP response (pages load only this site's JS and CSS)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _http_error(site: Site) -> Any:
    async def handle(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = exc.detail if isinstance(exc, HTTPException) else "internal error"
        if request.url.path.startswith("/api/"):
            return error(status, message)
        return site.message(request, status, message)

    return handle


def create_app(app: Encore, token: str | None = None) -> Starlette:
    """The dashboard's ASGI app; ``token`` defaults to ``app.settings.dashboard_token``."""
    auth = Auth(token if token is not None else app.settings.dashboard_token)
    pages = Pages()
    api = Api(app, auth, pages)
    site = Site(app, auth, pages, api)
    routes = [
        Route("/", site.index),
        Route("/workflows/{workflow_id}", site.workflow),
        Route("/login", site.login_form, methods=["GET"]),
        Route("/login", site.login, methods=["POST"]),
        Route("/logout", site.logout, methods=["POST"]),
        Route("/api/workflows", api.list_workflows),
        Route("/api/workflows/{workflow_id}", api.describe),
        Route("/api/workflows/{workflow_id}/cancel", api.cancel, methods=["POST"]),
        Route("/api/workflows/{workflow_id}/retry", api.retry, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    web = Starlette(routes=routes, exception_handlers={HTTPException: _http_error(site)})
    web.add_middleware(SecurityHeaders)
    return web


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(app: Encore, host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> None:
    """Serve the dashboard with uvicorn until interrupted."""
    import uvicorn

    web = create_app(app, token)
    if not _loopback(host):
        logger.warning(
            "the dashboard on %s shows workflow data (arguments, results, data) to anyone who can reach it; "
            "put it behind an authenticating proxy or bind it to 127.0.0.1",
            host,
        )
    uvicorn.run(web, host=host, port=port, log_level="info", proxy_headers=False)
