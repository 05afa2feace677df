"""The dashboard's browser defences: security headers on every response, and CSRF protection.

**Headers.** Every response carries a Content-Security-Policy that allows only
the dashboard's own resources and no framing (``frame-ancestors 'none'``, with
``X-Frame-Options: DENY`` for older browsers), ``X-Content-Type-Options:
nosniff`` and ``Referrer-Policy: no-referrer`` (a page URL never leaves in a
``Referer``).

**CSRF.** A state-changing request (any method but GET, HEAD, OPTIONS) is
refused with 403 unless both hold:

1. *Same origin* (:class:`SameOrigin`, here): ``Sec-Fetch-Site``, when sent,
   is ``same-origin`` or ``none``, and ``Origin``, when sent, is the
   dashboard's own origin (the ``Host`` it was reached at, or
   ``serve.public_url``). A page on another port of the same host is
   same-*site* but not same-origin: refused. The session cookie is
   ``SameSite=Strict``, which does not stop such a page, so this check does.
   Under our ``Referrer-Policy: no-referrer`` a browser posts the dashboard's
   own forms with ``Origin: null``; that passes only with ``Sec-Fetch-Site``.
2. *A CSRF token* (the ``asgi-csrf`` library, double-submit): a signed
   random token in the ``tolken_csrf`` cookie must come back in the form
   field ``csrftoken`` (the dashboard's forms carry it) or in the
   ``X-CSRFToken`` header.

A request that carries ``Authorization: Bearer`` is authenticated by that
header alone (:class:`tolken.web.auth.TokenAuth` ignores the cookie then), and
a browser cannot send that header from another origin, so such API clients
skip the token (2); the origin check (1) still applies to whatever a browser
sends. The webhook receiver is authenticated by its signature and skips both.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Collection
from typing import Any, cast
from urllib.parse import urlsplit

from asgi_csrf import Errors, asgi_csrf  # type: ignore[import-untyped]  # untyped library
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tolken.logging import get_logger

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "SAFE_METHODS",
    "SECURITY_HEADERS",
    "SameOrigin",
    "SecurityHeaders",
    "csrf_protect",
    "csrf_token",
    "json_or_page",
]

_log = get_logger("tolken.web")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ENTERED = "tolken.csrf_passed"  # scope key: set once asgi-csrf hands the request on
CSRF_COOKIE = "tolken_csrf"
CSRF_FIELD = "csrftoken"  # asgi-csrf's form field; the header is X-CSRFToken
_SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})  # "none": typed in, a bookmark

# Renders a refusal: (scope, message, status) -> response. The app passes one
# that answers an HTML page to a browser page and JSON to an API client.
Refusal = Callable[[Scope, str, int], Response]


class SecurityHeaders:
    """ASGI middleware: adds :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SameOrigin:
    """ASGI middleware: refuses (403) a state-changing request a browser sent from another origin.

    ``exempt`` paths (the webhook receiver) are not checked; ``public_url``
    is a second accepted origin (the dashboard behind a proxy).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        refuse: Refusal,
        exempt: Collection[str] = (),
        public_url: str | None = None,
    ) -> None:
        self.app = app
        self._refuse = refuse
        self._exempt = tuple(exempt)
        self._public = _origin(public_url) if public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or _under(scope["path"], self._exempt)
        ):
            await self.app(scope, receive, send)
            return
        reason = self._cross_origin(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        _log.warning("cross-origin request refused", path=scope["path"], reason=reason)
        message = f"Refused: {reason}. Use the dashboard's own pages."
        await self._refuse(scope, message, 403)(scope, receive, send)

    def _cross_origin(self, scope: Scope) -> str | None:
        """Why the request is not same-origin, or None when it is (or no browser says)."""
        headers = Headers(scope=scope)
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in _SAME_ORIGIN_SITES:
            return f"the request came from another origin (Sec-Fetch-Site: {site})"
        origin = headers.get("origin")
        if origin is None:
            # Browsers send Origin on every POST; a client without one is no browser
            # (and still needs the token or a Bearer header).
            return None
        if origin == "null":
            # Our pages' Referrer-Policy: no-referrer makes browsers send "Origin: null"
            # on their own forms; then Sec-Fetch-Site (checked above) must vouch.
            return None if site is not None else "the request's origin is opaque (Origin: null)"
        own = _origin(f"{scope.get('scheme', 'http')}://{headers.get('host', '')}")
        if _origin(origin) not in {own, self._public}:
            return f"the request came from another origin (Origin: {origin})"
        return None


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    """``path`` is one of ``prefixes`` or below one (``/webhooks/pms/acme``)."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` in lower case, without a default port."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "invalid"
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def csrf_protect(
    app: ASGIApp, *, session_key: str | None, refuse: Refusal, exempt: Collection[str] = ()
) -> ASGIApp:
    """``app`` behind asgi-csrf's double-submit token check (see the module docstring).

    The token's signing key is derived from ``session_key`` (``serve.token``),
    so open pages keep working across a restart and between processes
    serving the same dashboard.
    """
    exempt_paths = tuple(exempt)
    if session_key:
        signing = hmac.new(session_key.encode(), b"tolken csrf", hashlib.sha256).hexdigest()
    else:
        signing = secrets.token_hex(32)  # nothing gets past the token check anyway

    def skip(scope: Scope) -> bool:
        return _under(scope["path"], exempt_paths)

    async def refused(scope: Scope, send: Send, error: Any) -> None:
        message = (
            "Refused: the form's CSRF token is missing or out of date. "
            "Reload the page and try again."
            if error in (Errors.FORM_URLENCODED_MISMATCH, Errors.MULTIPART_MISMATCH)
            else "Refused: a state-changing request from a browser needs the page's CSRF token "
            "(form field csrftoken or header X-CSRFToken), or use Authorization: Bearer."
        )
        _log.warning("request without a valid CSRF token refused", path=scope["path"])
        await refuse(scope, message, 403)(scope, _no_body, send)

    async def entered(scope: Scope, receive: Receive, send: Send) -> None:
        scope[_ENTERED].append(True)  # the library let the request through
        await app(scope, receive, send)

    protected = cast(
        ASGIApp,
        asgi_csrf(
            entered,
            cookie_name=CSRF_COOKIE,
            signing_secret=signing,
            skip_if_scope=skip,
            cookie_samesite="Strict",
            send_csrf_failed=refused,
        ),
    )

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        # asgi-csrf reads a form body itself and raises on one it cannot parse
        # (not UTF-8, a multipart body without a boundary): that is a bad request.
        passed: list[bool] = []
        scope = {**scope, _ENTERED: passed}
        try:
            await protected(scope, receive, send)
        except (ValueError, IndexError, AssertionError):
            if passed or scope["type"] != "http":
                raise
            _log.warning("unreadable form refused", path=scope["path"])
            message = "Refused: the form body could not be read (URL-encoded UTF-8 expected)."
            await refuse(scope, message, 400)(scope, _no_body, send)

    return guarded


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def csrf_token(scope: Scope) -> str:
    """The CSRF token to put in a form of the page being rendered (sets the cookie)."""
    get: Callable[[], str] = scope["csrftoken"]
    return get()


def json_or_page(page: Callable[[str, int], str], is_page: Callable[[str], bool]) -> Refusal:
    """A :data:`Refusal` answering an HTML page (``page(message, status)``) or JSON."""

    def refuse(scope: Scope, message: str, status: int) -> Response:
        if is_page(scope["path"]):
            return HTMLResponse(page(message, status), status)
        error = "forbidden" if status == 403 else "bad request"
        return JSONResponse({"error": error, "message": message}, status)

    return refuse
