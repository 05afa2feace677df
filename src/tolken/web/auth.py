"""The dashboard token: a Bearer header, ``?token=``, or the cookie a ``?token=`` visit sets.

A browser that opens ``/?token=...`` is redirected to the same page without
the token (so it does not linger in the address bar or the history) and
given a session cookie. The cookie holds an HMAC of the token, never the
token itself; it is ``HttpOnly`` and ``SameSite=Strict``. ``?token=`` is
accepted on GET (and HEAD) only: a form posted with the token in its action
is refused (403), whoever made it. A request with an ``Authorization`` header
is judged by that header alone, never by a cookie beside it. The CSRF checks
on top of this are in :mod:`tolken.web.security`.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from pydantic import SecretStr
from starlette.requests import Request

__all__ = ["COOKIE_NAME", "PUBLIC_PATHS", "TokenAuth", "url_without_token"]

COOKIE_NAME = "tolken_session"
# /healthz is for load balancers; /webhooks/pms authenticates by its signature;
# the stylesheet is no secret (the sign-in page uses it).
PUBLIC_PATHS = frozenset({"/healthz", "/webhooks/pms", "/static/tolken.css"})


class TokenAuth:
    """Checks requests against ``serve.token``; with no token configured nothing is let in."""

    def __init__(self, token: SecretStr | str | None) -> None:
        if isinstance(token, SecretStr):
            token = token.get_secret_value()
        self._token = (token or "").encode("utf-8")

    @property
    def configured(self) -> bool:
        return bool(self._token)

    def _equals(self, candidate: str | None) -> bool:
        if not self._token or not candidate:
            return False
        return hmac.compare_digest(candidate.encode("utf-8"), self._token)

    def session_value(self) -> str:
        """The cookie value: a keyed hash of the token, useless for the API or for guessing it."""
        return hmac.new(self._token, b"tolken dashboard session", hashlib.sha256).hexdigest()

    def cookie_ok(self, request: Request) -> bool:
        value = request.cookies.get(COOKIE_NAME)
        return bool(self._token and value) and hmac.compare_digest(
            (value or "").encode("utf-8"), self.session_value().encode("ascii")
        )

    def header_ok(self, request: Request) -> bool:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self._equals(credentials.strip())

    def query_ok(self, request: Request) -> bool:
        return self._equals(request.query_params.get("token"))

    def allowed(self, request: Request) -> bool:
        """True when the request carries the token in an accepted form.

        With an ``Authorization`` header only that header counts, so a
        request "authenticated by Bearer" (which skips the CSRF token) never
        rides on a cookie; ``?token=`` counts on GET and HEAD only.
        """
        if "authorization" in request.headers:
            return self.header_ok(request)
        if request.method in ("GET", "HEAD") and self.query_ok(request):
            return True
        return self.cookie_ok(request)


def url_without_token(request: Request) -> str:
    """The request's path and query without ``token`` (where a ``?token=`` visit is sent)."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    query = urlencode(params)
    return request.url.path + (f"?{query}" if query else "")
