"""The reference PMS: FastAPI routes of the contract in DESIGN §2 over the SQLite store."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from enum import Enum
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from tolken.sandbox.control import install_control
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import openapi as docs
from tolken.sandbox.pms.cursor import decode_cursor, encode_cursor, format_ts, parse_ts
from tolken.sandbox.pms.db import Store
from tolken.sandbox.pms.schema import COLLECTIONS, ResourceType
from tolken.sandbox.pms.seed import seed
from tolken.sandbox.pms.validation import URL_PATTERN, ApiError, FieldProblem
from tolken.sandbox.pms.webhooks import WebhookDispatcher
from tolken.sandbox.pms.workspaces import Workspaces

API = "/api/v1"
MAX_BODY = 1024 * 1024
#: The largest ``after`` of the changes feed: seq is a signed 64-bit SQLite integer.
MAX_SEQ = 2**63 - 1
_IF_MATCH = re.compile(r'^(?:W/)?(?:"(\d+)"|(\d+))$')

LIST_DOC = (
    "Records in (updated_at, id) order; updated_after is exclusive. Every write gives the "
    "record an updated_at later than all others, so it moves to the end. During one "
    "traversal (until next_cursor is null) no record is returned twice at the same version, "
    "a record reappears only when written since its last appearance, and every record that "
    "exists when the last page is read is returned, last in its then-current version."
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": docs.ErrorBody, "description": "missing or wrong API key"},
    422: {"model": docs.ErrorBody, "description": "field errors"},
    429: {"model": docs.ErrorBody, "description": "slow down; see Retry-After"},
}


def _error(
    status: int, field: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"errors": [{"field": field, "message": message}]}, status, headers=headers)


def _bearer_key(scope: Scope) -> str | None:
    """The API key of ``Authorization: Bearer <key>``, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key if scheme == "Bearer" and key else None
    return None


class _BearerAuth:
    """401 for any API request without ``Authorization: Bearer <workspace key>``."""

    def __init__(self, app: ASGIApp, workspaces: Workspaces) -> None:
        self.app = app
        self._workspaces = workspaces
        self._base = workspaces.api_key.encode()

    def _accepted(self, key: str | None) -> bool:
        if key is None:
            return False
        given = key.encode("latin-1", errors="replace")
        # The base key in constant time; a workspace suffix is no secret.
        head = given[: len(self._base)]
        return hmac.compare_digest(head, self._base) and self._workspaces.is_key(key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        guarded = path.startswith(API + "/") and path != API + "/openapi.json"
        if scope["type"] == "http" and guarded and not self._accepted(_bearer_key(scope)):
            response = _error(
                401, "Authorization", "missing or invalid API key", {"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 413 over 1 MB, 400 when malformed, 422 when not an object."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, [FieldProblem("", "request body is larger than 1 MB")])
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, [FieldProblem("", "request body is larger than 1 MB")])
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, [FieldProblem("", f"malformed JSON: {exc}")]) from exc
    except RecursionError as exc:
        raise ApiError(400, [FieldProblem("", "malformed JSON: nested too deeply")]) from exc
    if not isinstance(body, dict):
        raise ApiError(422, [FieldProblem("", "the body must be a JSON object")])
    return body


def _if_match(request: Request) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    found = _IF_MATCH.match(raw.strip())
    if not found:
        raise ApiError(400, [FieldProblem("If-Match", 'must be a quoted version, like "3"')])
    return int(found.group(1) or found.group(2))


def _record_response(record: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(record, status, headers={"ETag": f'"{record["version"]}"', **headers})


def create_app(
    data_dir: Path | None = None,
    *,
    api_key: str = PMS_API_KEY,
    webhook_max_attempts: int = 6,
    webhook_base_delay: float = 0.5,
) -> FastAPI:
    """The reference PMS as an ASGI app.

    ``data_dir=None`` keeps state in a fresh temporary SQLite file; otherwise
    in ``data_dir/pms.sqlite3``, which survives restarts. ``api_key`` and every
    ``<api_key>-<name>`` open a workspace of their own. Webhooks are
    delivered while the app's lifespan runs (uvicorn, or ``with TestClient(app)``).
    """
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    dispatcher = WebhookDispatcher(max_attempts=webhook_max_attempts, base_delay=webhook_base_delay)
    workspaces = Workspaces(
        data_dir, api_key, lambda store, item: dispatcher.enqueue(item, store.webhook_secrets())
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        dispatcher.start()
        try:
            yield
        finally:
            dispatcher.stop()

    app = FastAPI(
        title="tolken reference PMS",
        version="1",
        description=(
            "The PMS REST contract tolken syncs with (docs/pms-contract.md). "
            "All /api/v1 endpoints except this document need `Authorization: Bearer <api key>`."
        ),
        openapi_url=f"{API}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.workspaces = workspaces
    app.state.store = workspaces.default
    app.state.webhooks = dispatcher

    async def workspace(request: Request) -> Store:
        key = _bearer_key(request.scope)
        assert key is not None  # _BearerAuth let the request in
        return workspaces.get(key)

    _install_error_handlers(app)
    for collection, resource in COLLECTIONS.items():
        _add_resource_routes(app, workspace, collection, resource)
    _add_feed_routes(app, workspace)
    app.add_middleware(_BearerAuth, workspaces=workspaces)

    def identify(scope: Scope) -> str | None:
        key = _bearer_key(scope)
        return key if key is not None and workspaces.is_key(key) else None

    def seed_workspace(counts: dict[str, int], key: str | None) -> dict[str, Any]:
        return seed(workspaces.default if key is None else workspaces.get(key), counts)

    install_control(
        app,
        on_reset=workspaces.reset,
        on_seed=seed_workspace,
        client_field="api_key",
        identify=identify,
        fault_response=_fault_response,
    )
    docs.install_openapi(app)
    return app


def _fault_response(status: int) -> Response:
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    message = "rate limit exceeded" if status == 429 else "injected sandbox fault"
    return _error(status, "", message, headers)


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at the request's path (one route per method here)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        return _error(exc.status_code, "", str(exc.detail), headers)

    async def query_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": str(e["loc"][-1]) if e.get("loc") else "", "message": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse({"errors": errors}, 422)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, query_error)


def _updated_after_bound(updated_after: str | None) -> str | None:
    """The ``updated_after`` query parameter as the store's timestamp; 422 when unreadable."""
    if updated_after is None:
        return None
    try:
        return format_ts(parse_ts(updated_after))
    except ValueError as exc:
        raise ApiError(
            422, [FieldProblem("updated_after", "must be an ISO-8601 timestamp")]
        ) from exc


def _decoded_cursor(cursor: str) -> tuple[str, str]:
    """The ``cursor`` query parameter decoded; 422 when it is not one of this list's."""
    try:
        return decode_cursor(cursor)
    except ValueError as exc:
        raise ApiError(422, [FieldProblem("cursor", "is not a cursor of this list")]) from exc


#: The FastAPI dependency that gives a handler its request's workspace.
WorkspaceOf = Callable[[Request], Awaitable[Store]]


def _add_resource_routes(
    app: FastAPI, workspace: WorkspaceOf, collection: str, resource: ResourceType
) -> None:
    model = docs.Customer if resource == "customer" else docs.Project
    page_model = docs.CustomerPage if resource == "customer" else docs.ProjectPage
    create_body, patch_body = docs.WRITE_MODELS[resource]
    base = f"{API}/{collection}"
    tag: list[str | Enum] = [collection]

    async def list_records(
        updated_after: str | None = Query(None, description="ISO-8601; exclusive"),
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = Query(
            None,
            min_length=1,
            description="next_cursor of the previous page, as given (422 for anything else)",
        ),
        external_ref: str | None = Query(None, description="only records with this external_ref"),
        store: Store = Depends(workspace),
    ) -> Response:
        bound = _updated_after_bound(updated_after)
        after = None if cursor is None else _decoded_cursor(cursor)
        bodies, last, more = store.page_json(
            resource, limit=limit, updated_after=bound, after=after, external_ref=external_ref
        )
        next_cursor = encode_cursor(*last) if more and last else None
        content = f'{{"items":[{",".join(bodies)}],"next_cursor":{json.dumps(next_cursor)}}}'
        return Response(content, media_type="application/json")

    async def get_record(id: str, store: Store = Depends(workspace)) -> JSONResponse:
        record = store.get(resource, id)
        if record is None:
            raise ApiError(404, [FieldProblem("id", f"no {resource} with id {id}")])
        return _record_response(record)

    async def create_record(request: Request, store: Store = Depends(workspace)) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= 255:
            raise ApiError(400, [FieldProblem("Idempotency-Key", "must be 1 to 255 characters")])
        record, replayed = store.create(resource, await _json_body(request), key)
        extra = {"Location": f"{base}/{record['id']}"}
        if replayed:
            extra["Idempotent-Replayed"] = "true"
        return _record_response(record, 201, **extra)

    async def patch_record(
        id: str, request: Request, store: Store = Depends(workspace)
    ) -> JSONResponse:
        if_match = _if_match(request)
        return _record_response(store.patch(resource, id, await _json_body(request), if_match))

    async def delete_record(
        id: str, request: Request, store: Store = Depends(workspace)
    ) -> Response:
        store.delete(resource, id, _if_match(request))
        return Response(status_code=204)

    not_found: dict[int | str, dict[str, Any]] = {404: {"model": docs.ErrorBody}}
    invalid: dict[int | str, dict[str, Any]] = {
        422: {"model": docs.ErrorBody, "description": "field errors"}
    }
    app.add_api_route(
        base,
        list_records,
        methods=["GET"],
        tags=tag,
        summary=f"List {collection}",
        description=LIST_DOC,
        responses={200: {"model": page_model}, **invalid, **_ERRORS},
    )
    app.add_api_route(
        base,
        create_record,
        methods=["POST"],
        tags=tag,
        summary=f"Create a {resource}",
        status_code=201,
        responses={
            201: {
                "model": model,
                "description": "created, or replayed for a known Idempotency-Key",
            },
            400: {"model": docs.ErrorBody, "description": "malformed JSON"},
            409: {
                "model": docs.ErrorBody,
                "description": "the Idempotency-Key's record was deleted",
            },
            413: {"model": docs.ErrorBody, "description": "body over 1 MB"},
            422: {
                "model": docs.ErrorBody,
                "description": "field errors, or Idempotency-Key reused with another body",
            },
            **_ERRORS,
        },
        openapi_extra=docs.request_body(create_body),
    )
    app.add_api_route(
        base + "/{id}",
        get_record,
        methods=["GET"],
        tags=tag,
        summary=f"Get a {resource}",
        responses={200: {"model": model}, **not_found, **_ERRORS},
    )
    app.add_api_route(
        base + "/{id}",
        patch_record,
        methods=["PATCH"],
        tags=tag,
        summary=f"Update a {resource} (JSON Merge Patch)",
        responses={
            200: {"model": model},
            400: {"model": docs.ErrorBody, "description": "malformed JSON or If-Match"},
            **not_found,
            412: {"model": docs.StaleVersion, "description": "If-Match is not the current version"},
            413: {"model": docs.ErrorBody},
            **invalid,
            **_ERRORS,
        },
        openapi_extra=docs.request_body(patch_body, "application/merge-patch+json"),
    )
    app.add_api_route(
        base + "/{id}",
        delete_record,
        methods=["DELETE"],
        tags=tag,
        summary=f"Delete a {resource}",
        status_code=204,
        responses={
            204: {"description": "deleted; the changes feed gets a tombstone"},
            **not_found,
            400: {"model": docs.ErrorBody, "description": "malformed If-Match"},
            409: {"model": docs.ErrorBody, "description": "a project refers to this customer"},
            412: {"model": docs.StaleVersion},
            **_ERRORS,
        },
    )


def _add_feed_routes(app: FastAPI, workspace: WorkspaceOf) -> None:
    async def changes(
        after: int = Query(0, ge=0, le=MAX_SEQ, description="seq of the last change already seen"),
        limit: int = Query(100, ge=1, le=1000),
        store: Store = Depends(workspace),
    ) -> JSONResponse:
        items = store.changes(after, limit)
        last = items[-1]["seq"] if items else after
        return JSONResponse({"items": items, "last_seq": last, "has_more": len(items) == limit})

    async def add_webhook(request: Request, store: Store = Depends(workspace)) -> JSONResponse:
        body = await _json_body(request)
        problems = [FieldProblem(k, "unknown field") for k in body if k not in ("url", "secret")]
        url, secret = body.get("url"), body.get("secret")
        if not isinstance(url, str) or not re.match(URL_PATTERN, url):
            problems.append(FieldProblem("url", "must be an http(s) URL"))
        if not isinstance(secret, str) or not secret:
            problems.append(FieldProblem("secret", "must be a non-empty string"))
        if problems:
            raise ApiError(422, problems)
        assert isinstance(url, str)
        assert isinstance(secret, str)
        return JSONResponse(store.add_webhook(url, secret), 201)

    async def list_webhooks(store: Store = Depends(workspace)) -> JSONResponse:
        return JSONResponse({"items": store.webhooks()})

    async def delete_webhook(id: str, store: Store = Depends(workspace)) -> Response:
        if not store.delete_webhook(id):
            raise ApiError(404, [FieldProblem("id", f"no webhook with id {id}")])
        return Response(status_code=204)

    app.add_api_route(
        f"{API}/changes",
        changes,
        methods=["GET"],
        tags=["changes"],
        summary="The changes feed",
        responses={200: {"model": docs.ChangesPage}, **_ERRORS},
    )
    app.add_api_route(
        f"{API}/webhooks",
        add_webhook,
        methods=["POST"],
        tags=["webhooks"],
        status_code=201,
        summary="Register a webhook receiver",
        responses={
            201: {"model": docs.Webhook},
            400: {"model": docs.ErrorBody, "description": "malformed JSON"},
            413: {"model": docs.ErrorBody, "description": "body over 1 MB"},
            422: {"model": docs.ErrorBody, "description": "field errors"},
            **_ERRORS,
        },
        openapi_extra=docs.request_body(docs.WebhookWrite),
    )
    app.add_api_route(
        f"{API}/webhooks",
        list_webhooks,
        methods=["GET"],
        tags=["webhooks"],
        summary="List webhook receivers",
        responses={200: {"model": docs.WebhookList}, **_ERRORS},
    )
    app.add_api_route(
        f"{API}/webhooks/{{id}}",
        delete_webhook,
        methods=["DELETE"],
        tags=["webhooks"],
        status_code=204,
        summary="Unregister a webhook receiver",
        responses={204: {"description": "unregistered"}, 404: {"model": docs.ErrorBody}, **_ERRORS},
    )
