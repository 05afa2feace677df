"""The ``tolken serve`` web app: dashboard (HTML + JSON twin), ``/metrics``, ``/healthz``, webhooks.

Build it with :func:`create_app`; it holds no sync logic. Every response
carries the security headers and every state-changing request passes the CSRF
checks of :mod:`tolken.web.security`; webhook bodies are capped at 1 MiB and
replays are refused through the store (:mod:`tolken.web.webhooks`). What it
needs from the process around it comes in as callables:

- ``on_webhook(item)``: a verified PMS changes-feed item
  (``{"seq", "type", "id", "op"}``); the watch loop takes it from there
  (see :class:`tolken.web.serve.WorkQueue`). Must return quickly.
- ``wake()``: called after a person marked failures due or settled a
  conflict, so the loop runs a cycle now instead of at the next interval.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tolken import __version__
from tolken.config import ServeSettings, TolkenConfig
from tolken.connectors.pms import WebhookRejected
from tolken.errors import TolkenError
from tolken.logging import get_logger
from tolken.store import TenantStore
from tolken.vocabulary import FlowId
from tolken.web import _format
from tolken.web.auth import COOKIE_NAME, PUBLIC_PATHS, TokenAuth, url_without_token
from tolken.web.metrics import CONTENT_TYPE, Metrics
from tolken.web.pages import Context, api_router, router
from tolken.web.security import (
    CSRF_FIELD,
    SAFE_METHODS,
    Refusal,
    SameOrigin,
    SecurityHeaders,
    csrf_protect,
    csrf_token,
    json_or_page,
)
from tolken.web.webhooks import (
    BodyTooLarge,
    ChangeItem,
    InvalidDelivery,
    WebhookReceiver,
    read_capped,
)

__all__ = ["app_shell", "create_app", "make_templates"]

_TEMPLATES = Path(__file__).with_name("templates")
_STATIC = Path(__file__).with_name("static")
_log = get_logger("tolken.web")


def make_templates() -> Jinja2Templates:
    """The dashboard's templates, with its filters and the CSRF form field."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        ago=_format.ago_on_page, duration=_format.duration, value=_format.value, when=_format.when
    )
    env.globals["csrf_field"] = _csrf_field  # every form: {{ csrf_field(request) }}
    return Jinja2Templates(env=env)


def _csrf_field(request: Request) -> markupsafe.Markup:
    """The hidden form field that carries the page's CSRF token."""
    return markupsafe.Markup('<input type="hidden" name="{}" value="{}">').format(
        CSRF_FIELD, csrf_token(request.scope)
    )


def _nothing() -> None:
    return None


def _drop(_item: ChangeItem) -> None:
    return None


def create_app(
    config: TolkenConfig,
    store: TenantStore,
    *,
    on_webhook: Callable[[ChangeItem], None] = _drop,
    wake: Callable[[], None] = _nothing,
    metrics: Metrics | None = None,
    webhook_secret: SecretStr | str | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The web app of one tenant, reading its view of the store (``store.tenant``).

    ``webhook_secret`` overrides ``serve.webhook_secret`` (``tolken serve``
    makes one up when none is configured, as it registers the webhook itself);
    ``metrics`` lets the process share its counters with the connectors;
    ``clock`` (unix seconds) is for webhook freshness checks in tests.
    """
    serve = config.serve
    secret = webhook_secret if webhook_secret is not None else (serve and serve.webhook_secret)
    metrics = metrics or Metrics(store)
    receiver = WebhookReceiver(secret or None, on_webhook, store=store, clock=clock)
    all_flows: tuple[FlowId, ...] = ("departments", "customers", "projects")
    flows = tuple(f for f in all_flows if config.sync.flow(f).enabled)
    templates = make_templates()
    ctx = Context(store=store, tenant=store.tenant, flows=flows, wake=wake, templates=templates)

    def health() -> None:
        store.last_runs(limit=1)

    app = app_shell(serve, templates, is_public=PUBLIC_PATHS.__contains__, health=health)
    app.state.context = lambda _request: ctx
    app.state.metrics = metrics
    app.include_router(router)
    app.include_router(api_router, prefix="/api")

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    _add_webhook_route(app, receiver, metrics)

    return app


def app_shell(
    serve: ServeSettings | None,
    templates: Jinja2Templates,
    *,
    is_public: Callable[[str], bool],
    health: Callable[[], None],
) -> FastAPI:
    """The app every mode builds on: the browser defences, the token, errors, health, CSS.

    ``is_public(path)`` says which paths need no dashboard token (they
    authenticate otherwise); the ``/webhooks/`` paths among them also skip the
    CSRF checks (a signature authenticates them). ``health()`` raises a
    :class:`TolkenError` when the store cannot be reached.
    """
    auth = TokenAuth(serve.token if serve else None)
    app = FastAPI(
        title="tolken",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # the dashboard is not a public API; its JSON twins are documented
    )

    # Middleware, innermost first: the CSRF token check, the same-origin check,
    # the dashboard token (so nobody unauthenticated gets a body read), and the
    # security headers on every response, refusals included.
    def error_page(message: str, status: int) -> str:
        return templates.get_template("error.html").render(title=str(status), message=message)

    refuse = json_or_page(error_page, _is_page_path)
    exempt = {"/webhooks/pms"}
    app.add_middleware(
        csrf_protect,
        session_key=serve.token.get_secret_value() if serve and serve.token else None,
        refuse=refuse,
        exempt=exempt,
    )
    app.add_middleware(
        SameOrigin, refuse=refuse, exempt=exempt, public_url=serve.public_url if serve else None
    )

    _require_token(app, auth, templates, refuse, is_public)

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(TolkenError)
    async def store_down(request: Request, exc: TolkenError) -> Response:
        _log.error("dashboard request failed", path=request.url.path, error=str(exc))
        message = "The store cannot be reached right now; the page will work again when it is."
        if _is_page(request):
            return templates.TemplateResponse(
                request, "error.html", {"title": "Unavailable", "message": message}, 503
            )
        return JSONResponse({"error": message}, 503)

    @app.exception_handler(StarletteHTTPException)
    async def not_found(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_page(request):
            return templates.TemplateResponse(
                request,
                "error.html",
                {"title": f"{exc.status_code}", "message": str(exc.detail)},
                exc.status_code,
            )
        return JSONResponse({"error": exc.detail}, exc.status_code)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            health()
        except TolkenError as exc:
            _log.warning("health check: store unreachable", error=str(exc))
            return JSONResponse({"status": "unavailable", "store": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "store": "ok", "version": __version__})

    stylesheet = (_STATIC / "tolken.css").read_bytes()

    @app.get("/static/tolken.css", include_in_schema=False)
    def css() -> Response:
        return Response(
            stylesheet, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
        )

    return app


def _add_webhook_route(app: FastAPI, receiver: WebhookReceiver, metrics: Metrics) -> None:
    """``POST /webhooks/pms``: a capped body, verified and queued (202), or refused."""

    @app.post("/webhooks/pms", include_in_schema=False)
    async def pms_webhook(request: Request) -> JSONResponse:
        try:
            body = await read_capped(request.headers.get("content-length"), request.stream())
            # The store call blocks: keep it off the event loop.
            item = await run_in_threadpool(receiver.receive, request.headers, body)
        except BodyTooLarge as exc:
            metrics.webhooks.labels(outcome="rejected").inc()
            _log.warning("webhook rejected", reason=str(exc))
            return JSONResponse({"error": str(exc)}, 413)
        except WebhookRejected as exc:
            metrics.webhooks.labels(outcome="rejected").inc()
            _log.warning("webhook rejected", reason=exc.reason)
            return JSONResponse({"error": exc.message}, 401)
        except InvalidDelivery as exc:
            metrics.webhooks.labels(outcome="rejected").inc()
            _log.warning("webhook rejected", reason=str(exc))
            return JSONResponse({"error": str(exc)}, 400)
        metrics.webhooks.labels(outcome="accepted").inc()
        _log.info(
            "webhook accepted",
            resource=item.get("type"),
            pms_id=str(item.get("id")),
            op=item.get("op"),
            seq=item.get("seq"),
        )
        return JSONResponse({"accepted": True}, 202)


def _require_token(
    app: FastAPI,
    auth: TokenAuth,
    templates: Jinja2Templates,
    refuse: Refusal,
    is_public: Callable[[str], bool],
) -> None:
    """Refuse requests without the dashboard token (public paths aside); a token in the URL
    of a page becomes a session cookie, and is never accepted on a state-changing request."""

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if is_public(request.url.path):
            return await call_next(request)
        if request.method not in SAFE_METHODS and "token" in request.query_params:
            # A cross-site form could carry it in its action; the token opens GET pages only.
            return refuse(
                request.scope,
                "Refused: ?token= is accepted on GET only, to sign in. "
                "Post from the dashboard's pages, or send Authorization: Bearer <serve.token>.",
                403,
            )
        if not auth.allowed(request):
            return _refused(templates, request, configured=auth.configured)
        if auth.query_ok(request) and request.method in ("GET", "HEAD") and _is_page(request):
            # Trade the token in the URL for a cookie, and drop it from the address bar.
            response: Response = RedirectResponse(url_without_token(request), status_code=303)
        else:
            response = await call_next(request)
        if auth.query_ok(request) and request.method in ("GET", "HEAD"):
            response.set_cookie(
                COOKIE_NAME,
                auth.session_value(),
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path="/",
            )
        return response


def _is_page(request: Request) -> bool:
    """A browser page (HTML) rather than an API, metrics or webhook call."""
    return _is_page_path(request.url.path)


def _is_page_path(path: str) -> bool:
    return not (
        path.startswith(("/api/", "/webhooks/")) or path == "/metrics" or path in PUBLIC_PATHS
    )


def _refused(templates: Jinja2Templates, request: Request, *, configured: bool) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="tolken"'}
    reason = (
        "This dashboard needs its token."
        if configured
        else "No dashboard token is configured (serve.token in tolken.yaml), so it stays locked."
    )
    body: dict[str, Any] = {
        "error": "unauthorized",
        "message": reason,
        "how": "send 'Authorization: Bearer <serve.token>', or open the page once with "
        "?token=<serve.token> (a cookie keeps you signed in)",
    }
    if _is_page(request) and "json" not in request.headers.get("accept", ""):
        return templates.TemplateResponse(
            request,
            "unauthorized.html",
            {"title": "Sign in", "reason": reason, "path": request.url.path},
            401,
            headers=headers,
        )
    return JSONResponse(body, 401, headers=headers)
