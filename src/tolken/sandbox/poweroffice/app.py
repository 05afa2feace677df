"""The PowerOffice Go v2 simulator as an ASGI app (reference §1–10, §12; DESIGN §7).

Layers, outermost first:

1. `_CanonicalPath` rewrites the path to its canonical casing
   (``/demo/V2/customers`` → ``/Demo/v2/Customers``): the real gateway matches
   paths case-insensitively (reference §1).
2. The shared control middleware (`tolken.sandbox.control`): statistics,
   injected latency, drops and faults.
3. The route handlers. Each API handler first passes the gateway checks
   (subscription key, rate limit, bearer token; `auth`), then does the work in
   a worker thread against the SQLite store of the client the token belongs
   to (`clients`, `resources`, `listing`). Onboarding (`onboarding`) passes
   the subscription key and rate limit only, as its spec needs no token.

Responses are PascalCase like the spec. With ``camel_case`` on, the nested
``MailAddress`` object is camelCase everywhere and GET-by-id bodies are
camelCase throughout, as observed in the wild (reference §3.2).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tolken.sandbox.control import install_control
from tolken.sandbox.poweroffice.auth import (
    RateLimiter,
    TokenIssuer,
    check_api_call,
    check_subscription,
    client_of_headers,
    token_endpoint,
)
from tolken.sandbox.poweroffice.clients import Client, Clients
from tolken.sandbox.poweroffice.db import TABLES, TICKS_PER_SECOND, Store, format_ticks
from tolken.sandbox.poweroffice.listing import parse_list_query
from tolken.sandbox.poweroffice.onboarding import CONSENT_PATH, SESSION_PATH, Onboarding
from tolken.sandbox.poweroffice.problems import ApiError, gateway_response, problem_response
from tolken.sandbox.poweroffice.resources import SPECS
from tolken.sandbox.poweroffice.seed import seed
from tolken.sandbox.poweroffice.validation import malformed_json

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

__all__ = ["Simulator", "create_app"]

API_PREFIXES = ("/v2", "/Demo/v2")
LATE_COMMIT_PATH = "/_sandbox/late-commit"
TOKEN_PATHS = ("/OAuth/Token", "/Demo/OAuth/Token")
_CANONICAL = {
    "demo": "Demo",
    "v2": "v2",
    "oauth": "OAuth",
    "token": "Token",
    "onboarding": "Onboarding",
    "initiate": "Initiate",
    "finalize": "Finalize",
    "clientintegrationinformation": "ClientIntegrationInformation",
    **{path.lower(): path for path in TABLES},
}
#: What ClientIntegrationInformation lists: the sandbox grants every privilege.
PRIVILEGES = (
    "Customer",
    "Customer_Full",
    "Department",
    "Department_Full",
    "Project",
    "Project_Full",
)


class _DateHeader:
    """Stamp every answer with the simulator's clock in a ``Date`` header, as PowerOffice does.

    Served by uvicorn (whose own ``Date`` the sandbox runner turns off) or in
    process alike, so a client can read the server's time from any answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"date" for name, _ in headers):
                    headers.append((b"date", formatdate(usegmt=True).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)


class _CanonicalPath:
    """Rewrite API and token paths to canonical casing, drop a trailing slash."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope["path"])
            segments = path.rstrip("/").split("/")
            if len(segments) > 1 and segments[1].lower() in ("v2", "demo", "oauth"):
                canonical = "/".join(_CANONICAL.get(s.lower(), s) for s in segments)
                if canonical != path:
                    scope = dict(scope, path=canonical, raw_path=canonical.encode())
        await self.app(scope, receive, send)


def _camel(key: str) -> str:
    return key[:1].lower() + key[1:]


def _camel_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel(k): _camel_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_all(v) for v in value]
    return value


class Simulator:
    """State and behaviour behind one app instance."""

    def __init__(
        self,
        data_dir: Path | None,
        *,
        rate_limit_per_second: float | None,
        camel_case: bool,
        token_ttl_seconds: int,
    ) -> None:
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self.clients = Clients(data_dir)
        self.onboarding = Onboarding(self.clients)
        self.limiter = RateLimiter(rate_limit_per_second)
        self.tokens = TokenIssuer(token_ttl_seconds)
        self.camel_case = camel_case

    # -- control hooks -------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The default client's store (``sandbox-client-key``)."""
        return self.clients.default.store

    def reset(self, client: str | None) -> None:
        """Empty one client's tables, or every client's and forget pending onboardings."""
        self.clients.reset(client)
        if client is None:
            self.onboarding.clear()

    def seed(self, counts: dict[str, int], client: str | None) -> dict[str, Any]:
        """Add sample data to one client (the default client when None)."""
        target = self.clients.default if client is None else self.clients.get(client)
        return dict(seed(target.store, counts))

    def settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply runtime switches and return the current ones."""
        unknown = set(changes) - {"camel_case", "rate_limit_per_second", "token_ttl_seconds"}
        if unknown:
            raise ValueError(f"Unknown settings: {', '.join(sorted(unknown))}.")
        if "camel_case" in changes:
            if not isinstance(changes["camel_case"], bool):
                raise ValueError("camel_case must be a boolean.")
            self.camel_case = changes["camel_case"]
        if "rate_limit_per_second" in changes:
            rate = changes["rate_limit_per_second"]
            if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool)):
                raise ValueError("rate_limit_per_second must be a number or null.")
            self.limiter.rate = None if rate is None else float(rate)
        if "token_ttl_seconds" in changes:
            ttl = changes["token_ttl_seconds"]
            if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1:
                raise ValueError("token_ttl_seconds must be a positive integer.")
            self.tokens.ttl_seconds = ttl
        return {
            "camel_case": self.camel_case,
            "rate_limit_per_second": self.limiter.rate,
            "token_ttl_seconds": self.tokens.ttl_seconds,
        }

    def commit_late(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /_sandbox/late-commit``: an edit committed now but stamped ``seconds`` ago.

        ``{"resource": "Customers", "id": 1000001, "seconds": 1.5, "fields": {"Name": "X"},
        "client": key}`` sets the top-level ``fields`` and stamps the record's
        ``LastChangedDateTimeOffset`` ``seconds`` before now, as a record whose
        timestamp PowerOffice had not committed yet when an earlier listing ran.
        """
        resource, entity_id = body.get("resource"), body.get("id")
        seconds, fields = body.get("seconds", 0), body.get("fields") or {}
        if resource not in TABLES or not isinstance(entity_id, int):
            raise ValueError(f"resource must be one of {', '.join(TABLES)} and id an integer.")
        if not isinstance(seconds, int | float) or seconds < 0 or not isinstance(fields, dict):
            raise ValueError("seconds must be a number >= 0 and fields an object.")
        client = body.get("client")
        target = self.clients.default if client is None else self.clients.get(str(client))
        table = TABLES[resource][0]
        ticks = time.time_ns() // 100 - int(seconds * TICKS_PER_SECOND)
        stamp = format_ticks(ticks)
        with target.store.transaction() as conn:
            row = conn.execute(f"SELECT doc FROM {table} WHERE id = ?", (entity_id,)).fetchone()
            if row is None:
                raise ValueError(f"no {resource} record {entity_id}.")
            doc = {**json.loads(row[0]), **fields, "LastChangedDateTimeOffset": stamp}
            conn.execute(
                f"UPDATE {table} SET doc = ?, last_changed = ? WHERE id = ?",
                (json.dumps(doc), ticks, entity_id),
            )
        return {"id": entity_id, "LastChangedDateTimeOffset": stamp}

    # -- rendering -----------------------------------------------------------------
    def render(self, doc: dict[str, Any], *, by_id: bool = False) -> dict[str, Any]:
        """A DTO as it goes on the wire under the current casing switch."""
        if not self.camel_case:
            return doc
        if by_id:
            return dict(_camel_all(doc))
        if isinstance(doc.get("MailAddress"), dict):
            doc = dict(doc, MailAddress=_camel_all(doc["MailAddress"]))
        return doc

    def json_response(self, body: Any, status: int = 200) -> Response:
        """UTF-8 JSON."""
        return Response(
            json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            status_code=status,
            media_type="application/json; charset=utf-8",
        )

    # -- handlers ---------------------------------------------------------------------
    def list_page(self, path: str, request: Request, store: Store) -> Response:
        """GET /X: one page of ``store`` as a bare array, 204 when empty, X-Pagination header."""
        spec = SPECS[path]
        query = parse_list_query(spec, list(request.query_params.multi_items()))
        table = TABLES[path][0]
        where = (" WHERE " + " AND ".join(query.where)) if query.where else ""
        if query.contact_groups:
            known = {
                v
                for (v,) in store.query(
                    "SELECT DISTINCT value FROM customers, json_each(customers.doc, "
                    "'$.ContactGroupIds')"
                )
            }
            missing = [str(g) for g in query.contact_groups if g not in known]
            if missing:
                raise ApiError(
                    404,
                    "Object(s) not found",
                    f"Could not find contact group(s) with id = {', '.join(missing)}.",
                )
        with store.lock:
            total = store.query(f"SELECT COUNT(*) FROM {table}{where}", query.args)[0][0]
            offset = (query.page_number - 1) * query.page_size
            rows = store.query(
                f"SELECT doc FROM {table}{where} ORDER BY {query.order_sql} LIMIT ? OFFSET ?",
                [*query.args, query.page_size, offset],
            )
        if not rows:
            return Response(status_code=204)
        if query.fields is None and not self.camel_case:
            body = "[" + ",".join(row[0] for row in rows) + "]"
        else:
            docs = [json.loads(row[0]) for row in rows]
            if query.fields is not None:
                docs = [{f: d.get(f) for f in query.fields} for d in docs]
            body = json.dumps([self.render(d) for d in docs], ensure_ascii=False)
        pages = math.ceil(total / query.page_size)
        paging = {
            "totalCount": total,
            "pageSize": query.page_size,
            "currentPage": query.page_number,
            "totalPages": pages,
            "previousPageLink": _page_link(request, query.page_number - 1)
            if query.page_number > 1
            else None,
            "nextPageLink": _page_link(request, query.page_number + 1)
            if query.page_number < pages
            else None,
        }
        return Response(
            body.encode(),
            media_type="application/json; charset=utf-8",
            headers={"X-Pagination": json.dumps(paging, separators=(",", ":"))},
        )


def _page_link(request: Request, page: int) -> str:
    items = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k.lower().removeprefix("resourceparameter.") != "pagenumber"
    ]
    items.append(("PageNumber", str(page)))
    return str(request.url.replace(query=urlencode(items)))


def _entity_id(request: Request) -> int:
    """The path's ``{id}``: an Int64 as the real API binds it, else 400 (never 500)."""
    text = request.path_params["id"]
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not INT64_MIN <= value <= INT64_MAX:
        raise ApiError(400, "Unable to cast object(s)", f"The value '{text}' is not valid.")
    return value


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media in ("application/json", "text/json") or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _json_body(request: Request) -> Any:
    # ASP.NET Core refuses bodies it has no input formatter for (form data, text).
    if not _is_json(request.headers.get("content-type", "")):
        raise ApiError(
            415,
            "Unsupported Media Type",
            "Send the body as application/json (PATCH: application/json-patch+json).",
        )
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise malformed_json(str(exc)) from None


Handler = Callable[[Request], Awaitable[Response]]
ClientHandler = Callable[[Request, Client], Awaitable[Response]]


def _api(sim: Simulator, work: ClientHandler) -> Handler:
    """Gateway checks, then ``work`` for the token's client; errors become ProblemDetails."""

    async def endpoint(request: Request) -> Response:
        passed = check_api_call(request, sim.limiter, sim.tokens)
        if isinstance(passed, Response):
            return passed
        client = sim.clients.get(passed)
        return await _problems(request, lambda: work(request, client))

    return endpoint


async def _problems(request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
    """``work()``; ApiError and crashes become ProblemDetails."""
    try:
        return await work()
    except ApiError as error:
        return problem_response(error, request.url.path)
    except Exception as exc:  # noqa: BLE001 - any unexpected bug must still look like the API's 500
        crash = ApiError(500, "An unexpected error occurred", type(exc).__name__)
        return problem_response(crash, request.url.path)


def _routes(app: FastAPI, sim: Simulator, prefix: str, path: str) -> None:
    async def list_items(request: Request, client: Client) -> Response:
        return await run_in_threadpool(sim.list_page, path, request, client.store)

    async def create(request: Request, client: Client) -> Response:
        body = await _json_body(request)
        doc = await run_in_threadpool(client.resources.create, path, body)
        return sim.json_response(sim.render(doc), 201)

    async def get(request: Request, client: Client) -> Response:
        doc = await run_in_threadpool(client.resources.get, path, _entity_id(request))
        return sim.json_response(sim.render(doc, by_id=True))

    async def patch(request: Request, client: Client) -> Response:
        entity_id = _entity_id(request)
        body = await _json_body(request)
        doc = await run_in_threadpool(client.resources.patch, path, entity_id, body)
        return sim.json_response(sim.render(doc))

    async def delete(request: Request, client: Client) -> Response:
        await run_in_threadpool(client.resources.delete, path, _entity_id(request))
        return Response(status_code=200)

    base = f"{prefix}/{path}"
    app.add_route(base, _api(sim, list_items), methods=["GET"])
    app.add_route(base, _api(sim, create), methods=["POST"])
    app.add_route(base + "/{id}", _api(sim, get), methods=["GET"])
    app.add_route(base + "/{id}", _api(sim, patch), methods=["PATCH"])
    app.add_route(base + "/{id}", _api(sim, delete), methods=["DELETE"])


def _onboarding_routes(app: FastAPI, sim: Simulator, prefix: str) -> None:
    """Onboarding (subscription key only), ClientIntegrationInformation (a token)."""

    def gateway(work: Callable[[Request], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            refused = check_subscription(request, sim.limiter)
            if refused is not None:
                return refused
            return await _problems(request, lambda: work(request))

        return endpoint

    async def initiate(request: Request) -> Response:
        body = await _json_body(request)
        base = str(request.base_url)
        return sim.json_response(sim.onboarding.initiate(body, base))

    async def finalize(request: Request) -> Response:
        body = await _json_body(request)
        return sim.json_response(await run_in_threadpool(sim.onboarding.finalize, body))

    async def information(_request: Request, client: Client) -> Response:
        return sim.json_response(
            {
                "ActiveClientSubscriptions": ["Accounting", "Invoicing", "Project"],
                "ClientId": client.client_id,
                "ClientName": client.name,
                "InvalidPrivileges": [],
                "ValidPrivileges": list(PRIVILEGES),
            }
        )

    app.add_route(f"{prefix}/Onboarding/Initiate", gateway(initiate), methods=["POST"])
    app.add_route(f"{prefix}/Onboarding/Finalize", gateway(finalize), methods=["POST"])
    app.add_route(f"{prefix}/ClientIntegrationInformation", _api(sim, information), methods=["GET"])


def _consent_routes(app: FastAPI, sim: Simulator) -> None:
    """The person's side of onboarding: ``GET`` the temporary URL, ``POST`` consent."""

    def refused(detail: str) -> Response:
        return sim.json_response(
            {"title": "Invalid sandbox onboarding request", "detail": detail}, 400
        )

    async def describe(request: Request) -> Response:
        try:
            return sim.json_response(sim.onboarding.describe(str(request.url)))
        except ValueError as exc:
            return refused(str(exc))

    async def consent(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return refused("Expected a JSON object {temporary_url, clients}.")
        try:
            return sim.json_response(sim.onboarding.consent(body))
        except ValueError as exc:
            return refused(str(exc))

    async def commit_late(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return refused("Expected a JSON object {resource, id, seconds, fields}.")
        try:
            return sim.json_response(sim.commit_late(body))
        except ValueError as exc:
            return refused(str(exc))

    app.add_route(SESSION_PATH, describe, methods=["GET"])
    app.add_route(CONSENT_PATH, consent, methods=["POST"])
    app.add_route(LATE_COMMIT_PATH, commit_late, methods=["POST"])


def create_app(
    data_dir: Path | None = None,
    *,
    rate_limit_per_second: float | None = 10.0,
    camel_case: bool = False,
    token_ttl_seconds: int = 1200,
) -> FastAPI:
    """The simulator app. ``data_dir=None``: fresh in-memory state; else
    ``data_dir/poweroffice.sqlite3``, kept across restarts."""
    sim = Simulator(
        data_dir,
        rate_limit_per_second=rate_limit_per_second,
        camel_case=camel_case,
        token_ttl_seconds=token_ttl_seconds,
    )
    app = FastAPI(
        title="PowerOffice Go v2 simulator (tolken sandbox)",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.simulator = sim
    for prefix in API_PREFIXES:
        for path in TABLES:
            _routes(app, sim, prefix, path)

    async def token(request: Request) -> Response:
        return await token_endpoint(request, sim.limiter, sim.tokens)

    for token_path in TOKEN_PATHS:
        app.add_route(token_path, token, methods=["POST"])
    for prefix in API_PREFIXES:
        _onboarding_routes(app, sim, prefix)

    async def no_route(_request: Request, _exc: Exception) -> Response:
        # Unknown paths and methods are stopped by API Management, not the API.
        return gateway_response(404, "Resource not found")

    _consent_routes(app, sim)
    app.add_exception_handler(404, no_route)
    app.add_exception_handler(405, no_route)
    install_control(
        app,
        on_reset=sim.reset,
        on_seed=sim.seed,
        client_field="client",
        identify=lambda scope: client_of_headers(scope, sim.tokens),
        settings_hook=sim.settings,
    )
    app.add_middleware(_CanonicalPath)
    app.add_middleware(_DateHeader)
    return app
