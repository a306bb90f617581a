"""Who may act: a bearer token on the API, a signed session cookie (with a CSRF token) on the pages.

Reading is open. Actions (cancel, retry) need the dashboard token: without one configured the
dashboard is read-only and refuses every action. The session cookie never holds the token
itself: it holds ``<issued>.<nonce>.<signature>``, the signature an HMAC keyed by the token, so
changing the token logs everyone out. A cookie-authenticated form post must also carry the
session's CSRF token (an HMAC of its nonce) and, when the browser sends one, an ``Origin``
naming this host; the cookie is ``HttpOnly`` and ``SameSite=Strict`` besides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "encore_dashboard_session"
SESSION_S = 12 * 3600
READ_ONLY = "the dashboard is read-only: set ENCORE_DASHBOARD_TOKEN to enable actions"


@dataclasses.dataclass(frozen=True)
class Decision:
    """The outcome of an authorization check: ``status`` 200 means allowed."""

    status: int
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


ALLOWED = Decision(200)


@dataclasses.dataclass(frozen=True)
class Viewer:
    """What a page needs to know about its viewer: whether actions exist, whether logged in."""

    actions_enabled: bool
    logged_in: bool
    csrf_token: str = ""


def same_token(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class Auth:
    """The dashboard's token checks; ``token`` None makes the dashboard read-only."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None

    @property
    def enabled(self) -> bool:
        return self.token is not None

    # -- the session cookie -------------------------------------------------------------
    def _sign(self, purpose: str, value: str) -> str:
        assert self.token is not None
        key = self.token.encode("utf-8")
        return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        issued_nonce = f"{int(time.time())}.{secrets.token_hex(16)}"
        return f"{issued_nonce}.{self._sign('session', issued_nonce)}"

    def session_nonce(self, request: Request) -> str | None:
        """The nonce of the request's valid, unexpired session cookie, else None."""
        cookie = request.cookies.get(COOKIE, "")
        parts = cookie.split(".")
        if self.token is None or len(parts) != 3 or not parts[0].isdigit():
            return None
        issued, nonce, signature = parts
        if not same_token(signature, self._sign("session", f"{issued}.{nonce}")):
            return None
        if not 0 <= time.time() - int(issued) <= SESSION_S:
            return None
        return nonce

    def csrf_for(self, nonce: str) -> str:
        return self._sign("csrf", nonce)

    def viewer(self, request: Request) -> Viewer:
        nonce = self.session_nonce(request)
        if nonce is None:
            return Viewer(actions_enabled=self.enabled, logged_in=False)
        return Viewer(actions_enabled=True, logged_in=True, csrf_token=self.csrf_for(nonce))

    def set_cookie(self, request: Request, response: Response) -> None:
        response.set_cookie(
            COOKIE,
            self.new_session(),
            max_age=SESSION_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def clear_cookie(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    # -- checks -------------------------------------------------------------------------
    def check_token(self, given: str) -> bool:
        return self.token is not None and same_token(given, self.token)

    def authorize_action(self, request: Request, csrf_token: str | None) -> Decision:
        """May this request act? A bearer token, or a session cookie with its CSRF token."""
        if self.token is None:
            return Decision(403, READ_ONLY)
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, given = header.partition(" ")
            if scheme.lower() == "bearer" and self.check_token(given.strip()):
                return ALLOWED
            return Decision(401, "invalid dashboard token")
        nonce = self.session_nonce(request)
        if nonce is None:
            return Decision(401, "log in with the dashboard token, or send Authorization: Bearer <token>")
        if not same_origin(request):
            return Decision(403, "cross-site request refused")
        if csrf_token is None or not same_token(csrf_token, self.csrf_for(nonce)):
            return Decision(403, "missing or invalid CSRF token: reload the page and try again")
        return ALLOWED


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # old browsers and non-browser clients: the CSRF token still has to match
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc == host
