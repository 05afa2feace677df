"""A small REST API of a configurable shape, served on real loopback HTTP for the ``rest`` tests.

Not the reference PMS: a plain in-memory API whose auth, list and record
shape, paging, change filter, versions, idempotency and error bodies a test
chooses (:class:`Shape`), so each ``pms.rest`` variant meets a server that
really behaves that way. Every request is logged (:attr:`RestApi.requests`).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loopback import serve

KEY = "rest-api-key-0123"
USER = "tolken"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

Connect = Callable[..., Any]
"""The ``connect(rest_section, **pms_settings)`` fixture of the ``rest`` connector tests."""


@dataclass
class Shape:
    """How the API behaves; every field is one variant a ``pms.rest`` section can describe."""

    auth: Literal["bearer", "header", "query", "basic", "none"] = "bearer"
    body: Literal["root", "items", "jsonapi"] = "items"
    paging: Literal["page", "offset", "cursor", "cursor-url", "link", "none"] = "page"
    total: bool = False  # list answers carry {"total": n} (items shape)
    max_page: int = 1000  # the most records one page holds, whatever was asked
    since_param: str = "updated_after"
    since_inclusive: bool = False
    times: Literal["iso", "unix"] = "iso"
    version: Literal["field", "etag", "none"] = "field"
    version_in_body: bool = False  # the update body's "version" must match (else 409/412)
    idempotency_header: str | None = None
    ref_filter: Literal["honour", "ignore", "refuse"] = "honour"
    put_replaces: bool = True  # PUT replaces the whole record
    create_answer: Literal["record", "location"] = "record"  # 201 with the record, or a Location


@dataclass
class Logged:
    """One request the API received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class RestApi:
    """The API's state: its shape, records per resource, the clock and the request log."""

    shape: Shape = field(default_factory=Shape)
    records: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {"customers": {}, "projects": {}}
    )
    requests: list[Logged] = field(default_factory=list)
    ticks: int = 0
    next_id: int = 1
    keys: dict[str, int] = field(default_factory=dict)

    def reset(self, shape: Shape) -> None:
        """Empty the API and give it ``shape``."""
        self.shape = shape
        self.records = {"customers": {}, "projects": {}}
        self.requests.clear()
        self.keys.clear()
        self.ticks = 0
        self.next_id = 1

    def stamp(self) -> Any:
        """The next modification time (one second later than any before), in the API's spelling."""
        self.ticks += 1
        when = EPOCH + timedelta(seconds=self.ticks)
        return int(when.timestamp()) if self.shape.times == "unix" else when.isoformat()

    def add(self, resource: str, **fields: Any) -> dict[str, Any]:
        """Store a record as if someone else created it; returns it."""
        record = {"id": self.next_id, **fields, "updated_at": self.stamp(), "version": 1}
        self.records[resource][self.next_id] = record
        self.next_id += 1
        return record

    def writes(self) -> list[Logged]:
        """The requests that were not reads."""
        return [r for r in self.requests if r.method != "GET"]


def _time(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _authorised(api: RestApi, request: Request) -> bool:
    kind = api.shape.auth
    if kind == "bearer":
        return request.headers.get("authorization") == f"Bearer {KEY}"
    if kind == "header":
        return request.headers.get("x-api-key") == KEY
    if kind == "query":
        return request.query_params.get("api_key") == KEY
    if kind == "basic":
        expected = base64.b64encode(f"{USER}:{KEY}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"
    return True


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)


def _present(api: RestApi, resource: str, record: dict[str, Any]) -> dict[str, Any]:
    if api.shape.body == "jsonapi":
        attributes = {k: v for k, v in record.items() if k != "id"}
        return {"id": str(record["id"]), "type": resource, "attributes": attributes}
    return record


def _single(api: RestApi, resource: str, record: dict[str, Any], status: int = 200) -> Response:
    body = _present(api, resource, record)
    if api.shape.body == "jsonapi":
        body = {"data": body}
    headers = {"ETag": f'W/"{record["version"]}"'} if api.shape.version == "etag" else {}
    return JSONResponse(body, status_code=status, headers=headers)


def _fields_of(api: RestApi, resource: str, body: Any) -> dict[str, Any] | None:
    if api.shape.body != "jsonapi":
        return body if isinstance(body, dict) else None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("type") != resource:
        return None
    attributes = data.get("attributes")
    return attributes if isinstance(attributes, dict) else None


def _listing(api: RestApi, request: Request, resource: str) -> Response:
    shape, query = api.shape, request.query_params
    rows = sorted(api.records[resource].values(), key=lambda r: (_time(r["updated_at"]), r["id"]))
    since = query.get(shape.since_param)
    if since is not None:
        bound = float(since) if shape.times == "unix" else _time(since)
        rows = [
            r
            for r in rows
            if _time(r["updated_at"]) > bound
            or (shape.since_inclusive and _time(r["updated_at"]) == bound)
        ]
    ref = query.get("external_ref")
    if ref is not None and shape.ref_filter == "refuse":
        return _error(422, "unknown filter external_ref")
    if ref is not None and shape.ref_filter == "honour":
        rows = [r for r in rows if r.get("external_ref") == ref]
    size = min(int(query.get("limit", "100")), shape.max_page)
    start = {
        "page": (int(query.get("page", "1")) - 1) * size,
        "offset": int(query.get("offset", "0")),
        "cursor": int(query.get("cursor", "0")),
        "cursor-url": int(query.get("cursor", "0")),
        "link": int(query.get("cursor", "0")),
        "none": 0,
    }[shape.paging]
    end = len(rows) if shape.paging == "none" else start + size
    page = [_present(api, resource, r) for r in rows[start:end]]
    more = end < len(rows)
    nxt = str(request.url.include_query_params(cursor=end)) if more else None
    headers = {"Link": f'<{nxt}>; rel="next"'} if shape.paging == "link" and nxt else {}
    body: Any = page
    if shape.body == "items":
        body = {"items": page}
        if shape.total:
            body["total"] = len(rows)
        if shape.paging == "cursor":
            body["next_cursor"] = str(end) if more else None
        if shape.paging == "cursor-url":
            body["next"] = nxt
    elif shape.body == "jsonapi":
        body = {"data": page, "links": {"next": nxt}}
    return JSONResponse(body, headers=headers)


async def _collection(api: RestApi, request: Request) -> Response:
    resource = request.url.path.strip("/").split("/")[0]
    raw = await request.body()
    body = json.loads(raw) if raw else None
    api.requests.append(
        Logged(
            request.method,
            request.url.path,
            dict(request.query_params),
            dict(request.headers),
            body,
        )
    )
    if not _authorised(api, request):
        return _error(401, "bad credentials")
    if request.method == "GET":
        return _listing(api, request, resource)
    fields = _fields_of(api, resource, body)
    if fields is None:
        return _error(400, "the body is not a record of this type")
    header = api.shape.idempotency_header
    key = request.headers.get(header) if header else None
    if key is not None and key in api.keys:
        return _single(api, resource, api.records[resource][api.keys[key]], 200)
    if not fields.get("name"):
        return _error(422, "name must not be empty")
    record = api.add(resource, **fields)
    if key is not None:
        api.keys[key] = record["id"]
    if api.shape.create_answer == "location":
        return Response(status_code=201, headers={"Location": f"/{resource}/{record['id']}"})
    return _single(api, resource, record, 201)


async def _item(api: RestApi, request: Request) -> Response:
    resource, raw_id = request.url.path.strip("/").split("/")[:2]
    raw = await request.body()
    body = json.loads(raw) if raw else None
    api.requests.append(
        Logged(
            request.method,
            request.url.path,
            dict(request.query_params),
            dict(request.headers),
            body,
        )
    )
    if not _authorised(api, request):
        return _error(401, "bad credentials")
    record = api.records[resource].get(int(raw_id)) if raw_id.isdigit() else None
    if record is None:
        return _error(404, f"no {resource} record {raw_id}")
    if request.method == "GET":
        return _single(api, resource, record)
    if request.method == "DELETE":
        del api.records[resource][record["id"]]
        return Response(status_code=204)
    fields = _fields_of(api, resource, body)
    if fields is None:
        return _error(400, "the body is not a record of this type")
    return _write(api, request, resource, record, fields)


def _write(
    api: RestApi, request: Request, resource: str, record: dict[str, Any], fields: dict[str, Any]
) -> Response:
    """A PATCH or PUT of ``record``: versions checked, then the fields merged in."""
    match = request.headers.get("if-match")
    if match is not None and match.removeprefix("W/").strip('"') != str(record["version"]):
        return _error(412, "the record has changed")
    if api.shape.version_in_body and fields.get("version") != record["version"]:
        return _error(409, "version conflict")
    changes = {k: v for k, v in fields.items() if k not in ("id", "version", "updated_at")}
    if request.method == "PUT" and api.shape.put_replaces:
        kept = {k: record[k] for k in ("id", "version", "updated_at")}
        record.clear()
        record.update(kept)
    for name, value in changes.items():
        if value is None:
            record.pop(name, None)
        elif isinstance(value, dict) and isinstance(record.get(name), dict):
            record[name] = {**record[name], **value}
        else:
            record[name] = copy.deepcopy(value)
    record["version"] += 1
    record["updated_at"] = api.stamp()
    return _single(api, resource, record)


def create_app(api: RestApi) -> Starlette:
    """The ASGI app serving ``api`` under ``/customers`` and ``/projects``."""

    async def collection(request: Request) -> Response:
        return await _collection(api, request)

    async def item(request: Request) -> Response:
        return await _item(api, request)

    routes = []
    for resource in ("customers", "projects"):
        routes.append(Route(f"/{resource}", collection, methods=["GET", "POST"]))
        routes.append(Route(f"/{resource}/{{id}}", item, methods=["GET", "PATCH", "PUT", "DELETE"]))
    return Starlette(routes=routes)


@contextmanager
def running() -> Iterator[tuple[RestApi, str]]:
    """A fresh API on loopback: ``(state, base_url)``."""
    api = RestApi()
    with serve(create_app(api)) as url:
        yield api, url
