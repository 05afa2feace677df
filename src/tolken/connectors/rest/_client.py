"""The ``rest`` connector: any PMS whose REST API ``pms.rest`` describes (docs/pms-rest.md).

Every request goes through :meth:`RestConnector._send`: the configured
credentials, classification by :func:`classify_response` (the one
classifier of this connector) and bounded retries of what is safe to retry
(429 with ``Retry-After``, 5xx, timeouts). A create is retried only when the
server cannot have acted on it (a 429, a connection never made) unless the PMS
honours an idempotency header; a crash between a create and its commit is
recovered by :meth:`RestConnector.find_by_idempotency_key`.

Which capabilities the engine sees follows the section: ``changes.type:
feed`` makes the connector a :class:`~tolken.connectors.base.ChangeFeed`,
``updated-since`` an :class:`~tolken.connectors.base.UpdatedAfterListing`,
``none`` neither (a full listing every cycle, compared by content). The
engine never learns which connector it talks to.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx

from tolken._closing import Closeable
from tolken.config import PMSSettings, RestEndpoint, RestResource, RestSettings
from tolken.connectors._http import RetryPolicy, UnsentOnlyPolicy
from tolken.connectors._listing import ListingGuard, ListingLimits
from tolken.connectors.base import FeedPage, RemoteRecord, StampedRecord
from tolken.connectors.fields import nest
from tolken.connectors.pms import parse_changes_page
from tolken.connectors.rest._errors import classify_response, classify_transport_error
from tolken.connectors.rest._paging import PageRequest, first_page, next_page
from tolken.connectors.rest._wire import (
    MISSING,
    at,
    format_since,
    put,
    record_fields,
    to_record,
    wrap,
)
from tolken.errors import (
    ConfigError,
    ServerError,
    StaleVersion,
    TransportError,
    Unreachable,
    ValidationFailed,
)

__all__ = ["RestConnector"]

SYSTEM = "pms"
RESOURCES = ("customers", "projects")
MERGE_PATCH = "application/merge-patch+json"


def _deep_merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with ``patch`` merged in as RFC 7396 says (``None`` removes)."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


class RestConnector(Closeable):
    """A :class:`~tolken.connectors.base.Connector` for the PMS ``settings.rest`` describes.

    ``RestConnector(settings)`` gives the class with the capabilities the
    section declares (see the module docstring). ``http`` lets tests and the
    composition root hand in a client; ``stop`` ends retry waits and listings;
    every listing is bounded by ``limits`` (:mod:`tolken.connectors._listing`).
    """

    system = "pms"

    def __new__(cls, settings: PMSSettings, **_: Any) -> Self:
        if cls is RestConnector and settings.rest is not None:
            kind = settings.rest.changes.type
            chosen = {"feed": RestFeedConnector, "updated-since": RestListingConnector}
            cls = chosen.get(kind, cls)  # type: ignore[assignment]
        return super().__new__(cls)

    def __init__(
        self,
        settings: PMSSettings,
        *,
        http: httpx.Client | None = None,
        stop: threading.Event | None = None,
        limits: ListingLimits | None = None,
    ):
        if settings.rest is None:
            raise ConfigError("pms.connector: rest needs a pms.rest: section", key="pms.rest")
        self.settings = settings
        self.rest: RestSettings = settings.rest
        self._stop = stop
        self._limits = limits
        self._base = settings.base_url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=settings.timeout_seconds)
        self._retry = RetryPolicy()
        self._retry_unsent = UnsentOnlyPolicy()

    # -- plumbing -----------------------------------------------------------

    def _resource(self, resource: str) -> RestResource:
        if resource not in RESOURCES:
            raise ConfigError(
                f"the PMS has no resource {resource!r}; known: {', '.join(RESOURCES)}"
            )
        found: RestResource = getattr(self.rest.resources, resource)
        return found

    def _endpoint(self, resource: str, op: str, record_id: str | None = None) -> RestEndpoint:
        """The endpoint of ``op`` (list, get, create, update, delete), ``{id}`` filled in."""
        spec = self._resource(resource)
        given = getattr(spec, op)
        if given is False:
            raise ConfigError(
                f"pms.rest.resources.{resource}.delete is false: the PMS cannot delete",
                key=f"pms.rest.resources.{resource}.delete",
            )
        if given is None:
            update = "PUT" if self.rest.update_mode == "put" else "PATCH"
            method, path = {
                "list": ("GET", spec.path),
                "get": ("GET", spec.path.rstrip("/") + "/{id}"),
                "create": ("POST", spec.path),
                "update": (update, spec.path.rstrip("/") + "/{id}"),
                "delete": ("DELETE", spec.path.rstrip("/") + "/{id}"),
            }[op]
            given = RestEndpoint(method=method, path=path)
        if record_id is not None:
            given = given.model_copy(
                update={"path": given.path.replace("{id}", quote(record_id, safe=""))}
            )
        assert isinstance(given, RestEndpoint)
        return given

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self._base + "/" + path.lstrip("/")

    def _auth(self, headers: dict[str, str], params: dict[str, str]) -> None:
        auth, key = self.rest.auth, self.settings.api_key_value()
        if auth.type == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        elif auth.type == "basic":
            pair = f"{auth.username or ''}:{key}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif auth.type == "api-key" and auth.header:
            headers[auth.header] = key
        elif auth.type == "api-key" and auth.query:
            params[auth.query] = key

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One logical request: auth, classification and bounded retries; raises TolkenError."""
        all_headers: dict[str, str] = {"Accept": "application/json"}
        all_params = dict(params or {})
        self._auth(all_headers, all_params)
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = content_type or self.rest.body.content_type
        all_headers.update(headers or {})
        # httpx would replace a followed URL's own query with params: merge them instead.
        target = httpx.URL(url).copy_merge_params(all_params) if all_params else httpx.URL(url)
        message_path = self.rest.errors.message_path

        def once() -> httpx.Response:
            try:
                response = self._http.request(method, target, content=content, headers=all_headers)
            except httpx.TransportError as exc:
                raise classify_transport_error(exc) from exc
            error = classify_response(response, message_path)
            if error is not None:
                raise error
            return response

        policy = self._retry if idempotent else self._retry_unsent
        try:
            return policy.call(once, stop=self._stop)
        except TransportError as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):
                raise Unreachable(f"cannot reach the PMS at {self._base}", system=SYSTEM) from exc
            raise

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ServerError(
                f"the PMS answered {response.request.method} {response.request.url.path} "
                f"with a body that is not JSON",
                system=SYSTEM,
                status=response.status_code,
            ) from exc

    def _record(self, resource: str, response: httpx.Response) -> StampedRecord:
        """The record of a single-record answer (``body.record_path``)."""
        item = at(self._json(response), self.rest.body.record_path)
        return to_record(resource, item, self.rest.body, self.rest.identity)

    # -- listing ------------------------------------------------------------

    def _listing(
        self, resource: str, extra: Mapping[str, str] | None = None
    ) -> Iterator[StampedRecord]:
        """Every record the list endpoint gives with ``extra`` parameters, page by page."""
        spec = self._resource(resource)
        endpoint = self._endpoint(resource, "list")
        url = self._url(endpoint.path)
        guard = ListingGuard(
            "the PMS",
            SYSTEM,
            f"{endpoint.method} {urlsplit(url).path}",
            stop=self._stop,
            limits=self._limits,
        )
        guard.check_stop()
        size = self.settings.page_size
        request: PageRequest | None = first_page(
            self.rest.paging, url, {**spec.query, **(extra or {})}, size
        )
        seen_urls: set[str] = set()
        while request is not None:
            response = self._send(endpoint.method, request.url, params=request.params)
            body = self._json(response)
            raw = at(body, self.rest.body.list_path)
            if not isinstance(raw, list):
                where = self.rest.body.list_path or "the root"
                raise ServerError(
                    f"the PMS list of {resource} has no record array at {where} "
                    "(pms.rest.body.list_path)",
                    system=SYSTEM,
                )
            records = [
                to_record(resource, item, self.rest.body, self.rest.identity) for item in raw
            ]
            following = next_page(self.rest.paging, request, body, response.headers, len(raw), size)
            last = records[-1] if records else None
            last_key = (str(last.stamp), last.record.id) if last is not None else None
            guard.page([r.record.id for r in records], last_key, more=following is not None)
            yield from records
            if following is not None:
                key = str(httpx.URL(following.url).copy_merge_params(dict(following.params)))
                if key in seen_urls:
                    guard.fail("asked for the same page twice")
                seen_urls.add(key)
            request = following

    def list(
        self, resource: str, *, changed_after: datetime | None = None
    ) -> Iterator[RemoteRecord]:
        """Every record (with ``changes.type: updated-since``, those changed after the time)."""
        after = None
        if changed_after is not None and self.rest.changes.type == "updated-since":
            if changed_after.tzinfo is None:
                changed_after = changed_after.replace(tzinfo=UTC)
            after = changed_after.isoformat()
        for entry in self._changed_since(resource, after):
            yield entry.record

    def _changed_since(self, resource: str, after: str | None) -> Iterator[StampedRecord]:
        changes = self.rest.changes
        extra: dict[str, str] = {}
        if after is not None:
            overlap = timedelta(seconds=changes.overlap_seconds)
            extra[changes.param] = format_since(after, changes.format, overlap)
        return self._listing(resource, extra)

    # -- Connector protocol -------------------------------------------------

    def resources(self) -> tuple[str, ...]:
        """``customers`` and ``projects``."""
        return RESOURCES

    def get(self, resource: str, record_id: str) -> RemoteRecord:
        """Read one record; NotFound when it does not exist."""
        return self._get(resource, record_id).record

    def _get(self, resource: str, record_id: str) -> StampedRecord:
        endpoint = self._endpoint(resource, "get", record_id)
        return self._record(resource, self._send(endpoint.method, self._url(endpoint.path)))

    def create(
        self, resource: str, data: Mapping[str, Any], *, idempotency_key: str
    ) -> RemoteRecord:
        """Create a record; the same ``idempotency_key`` never makes a second one.

        The key goes in the configured idempotency header and/or into the
        reference field (unless the mapping writes that field itself).
        """
        spec = self._resource(resource)
        endpoint = self._endpoint(resource, "create")
        ways = self.rest.idempotency
        fields = nest(data)
        if ways.reference_field and at(fields, ways.reference_field) is MISSING:
            fields = put(fields, ways.reference_field, idempotency_key)
        headers = {ways.header: idempotency_key} if ways.header else None
        response = self._send(
            endpoint.method,
            self._url(endpoint.path),
            body=wrap(self.rest.body, fields, type_name=spec.type),
            headers=headers,
            idempotent=ways.header is not None,
        )
        location = response.headers.get("Location")
        if not response.content and location:
            where = httpx.URL(self._base + "/").join(location)
            return self._record(resource, self._send("GET", str(where))).record
        if not response.content:
            found = self.find_by_idempotency_key(resource, idempotency_key)
            if found is None:
                raise ServerError(
                    f"the PMS answered the create of a {resource} record with no body, "
                    "and the record cannot be found by its reference",
                    system=SYSTEM,
                )
            return found
        return self._record(resource, response).record

    def find_by_idempotency_key(self, resource: str, idempotency_key: str) -> RemoteRecord | None:
        """The record an earlier ``create`` with this key made, found by the reference field.

        Lists with the lookup filter, checks each item itself (a PMS may ignore
        the filter) and lists without it when the PMS refuses the parameter.
        None when the PMS keeps no reference (its idempotency header then makes
        a second create with the same key return the first record).
        """
        ways = self.rest.idempotency
        if ways.reference_field is None:
            return None
        param = ways.lookup_param or ways.reference_field
        try:
            return self._find_ref(
                resource, ways.reference_field, idempotency_key, {param: idempotency_key}
            )
        except ValidationFailed:
            return self._find_ref(resource, ways.reference_field, idempotency_key, {})

    def _find_ref(
        self, resource: str, field: str, ref: str, extra: Mapping[str, str]
    ) -> RemoteRecord | None:
        for entry in self._listing(resource, extra):
            if at(entry.record.data, field) == ref:
                return entry.record
        return None

    def update(
        self,
        resource: str,
        record_id: str,
        changes: Mapping[str, Any],
        *,
        version: int | None = None,
    ) -> RemoteRecord:
        """Change the given fields as ``update_mode`` says; ``version`` makes it conditional.

        ``merge-patch`` sends a JSON Merge Patch, ``patch`` the same object as
        plain JSON, ``put`` reads the record, merges and writes it whole. With
        ``identity.etag`` the record is read first: when its content still
        gives ``version`` its ETag goes back as ``If-Match`` (so nothing slips
        in between), else StaleVersion. Raises StaleVersion when the record
        moved since ``version``. A ``put`` with neither versions nor ETags can
        overwrite an edit made between its read and its write.
        """
        spec = self._resource(resource)
        endpoint = self._endpoint(resource, "update", record_id)
        identity = self.rest.identity
        patch = nest(changes)
        headers: dict[str, str] = {}
        if self.rest.update_mode == "put" or identity.etag:
            get = self._endpoint(resource, "get", record_id)
            current = self._send(get.method, self._url(get.path))
            now = self._record(resource, current).record
            if identity.etag:
                if version is not None and now.version != version:
                    raise StaleVersion(
                        f"the {resource} record {record_id} changed since tolken read it",
                        system=SYSTEM,
                        current_version=now.version,
                    )
                etag = current.headers.get("ETag")
                if version is not None and etag:
                    headers["If-Match"] = etag
            if self.rest.update_mode == "put":
                item = at(self._json(current), self.rest.body.record_path)
                whole = record_fields(self.rest.body, item) if isinstance(item, Mapping) else {}
                patch = _deep_merge(whole, patch)
        if version is not None and identity.version_field:
            if identity.version_in == "if-match":
                headers["If-Match"] = f'"{version}"'
            else:
                patch = put(patch, identity.version_field, version)
        content_type = MERGE_PATCH if self.rest.update_mode == "merge-patch" else None
        if self.rest.body.content_type != "application/json":
            content_type = self.rest.body.content_type
        response = self._send(
            endpoint.method,
            self._url(endpoint.path),
            body=wrap(self.rest.body, patch, type_name=spec.type, record_id=record_id),
            headers=headers,
            content_type=content_type,
        )
        if not response.content:
            return self.get(resource, record_id)
        return self._record(resource, response).record

    def delete(self, resource: str, record_id: str) -> None:
        """Delete a record; NotFound when it is already gone (ConfigError: the PMS cannot)."""
        endpoint = self._endpoint(resource, "delete", record_id)
        self._send(endpoint.method, self._url(endpoint.path))

    def close(self) -> None:
        """Close the HTTP client if this connector made it."""
        if self._owns_http:
            self._http.close()


class RestListingConnector(RestConnector):
    """A described PMS read by an updated-since filter: also an UpdatedAfterListing."""

    def list_updated_after(self, resource: str, after: str | None) -> Iterator[StampedRecord]:
        """Every record changed after ``after`` (its ``updated_at`` as the PMS spelt it).

        With ``overlap_seconds`` or an inclusive filter, records at or before
        ``after`` come again; the engine recognises them by content.
        """
        return self._changed_since(resource, after)


class RestFeedConnector(RestConnector):
    """A described PMS with the contract's changes feed: also a ChangeFeed."""

    def changes(self, after: int, *, limit: int) -> FeedPage:
        """One raw page of the changes feed: items with ``seq`` strictly greater than ``after``."""
        url = self._url(self.rest.changes.feed_path)
        response = self._send("GET", url, params={"after": str(after), "limit": str(limit)})
        return parse_changes_page(self._json(response))
