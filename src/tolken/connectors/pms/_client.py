"""The PMS REST-contract client (DESIGN §2).

Every request goes through :meth:`PMSClient._send`, which adds the bearer key,
classifies the response with :func:`classify_response` and retries what is
safe to retry: 429 (honouring ``Retry-After``), 5xx and timeouts, with
jittered, bounded backoff (the shared :class:`~tolken.connectors._http.RetryPolicy`,
built on tenacity). A request that is not idempotent
(registering a webhook) is retried only when the server cannot have acted on
it: a 429, or a connection that was never made. A create always carries its
``Idempotency-Key``, so retrying it is safe: the PMS answers a repeated key
with the record the first attempt made.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from tolken._closing import Closeable
from tolken.config import PMSSettings
from tolken.connectors._concurrency import AdaptiveConcurrency
from tolken.connectors._http import RetryPolicy, TokenClient, UnsentOnlyPolicy
from tolken.connectors._listing import ListingGuard, ListingLimits
from tolken.connectors.base import FeedPage, RemoteRecord, StampedRecord
from tolken.connectors.fields import nest
from tolken.connectors.pms._errors import classify_response, classify_transport_error
from tolken.connectors.pms._records import RESOURCES, parse_changes_page, to_record
from tolken.errors import (
    ConfigError,
    Fatal,
    NotFound,
    RateLimited,
    RecordError,
    Retriable,
    ServerError,
    TransportError,
    Unreachable,
    ValidationFailed,
)

__all__ = ["PMSClient"]

MERGE_PATCH = "application/merge-patch+json"


def _overloaded(error: Retriable) -> bool:
    """A 429, or a 503 (the server says it is overloaded): fewer requests at once for a while."""
    return isinstance(error, RateLimited) or error.status == 503


def _last_key(items: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The last item's ``(updated_at, id)``: the contract's listing order."""
    if not items:
        return None
    last = items[-1]
    return (str(last.get("updated_at")), str(last.get("id")))


class PMSClient(Closeable):
    """Talks to one PMS through the REST contract; a :class:`~tolken.connectors.base.Connector`.

    It also offers the contract's optional parts as the capabilities of
    :mod:`tolken.connectors.base`: the changes feed
    (:class:`~tolken.connectors.base.ChangeFeed`), the ``updated_after``
    listing in the PMS's own spelling
    (:class:`~tolken.connectors.base.UpdatedAfterListing`) and webhooks
    (:class:`~tolken.connectors.base.WebhookSource`). Which way changes are
    captured is the engine's choice (``pms.change_capture``).

    ``http`` lets tests hand in a client with an in-process transport (for
    example a ``starlette.testclient.TestClient``); without it the client makes
    and owns its own ``httpx.Client`` with ``settings.timeout_seconds``, which keeps
    no cookies (a client handed in keeps its own timeout and cookie policy).
    ``stop`` (a :class:`threading.Event`) ends retry waits and listings with
    :class:`~tolken.errors.Stopped` once set; every listing is bounded by
    ``limits`` (see :mod:`tolken.connectors._listing`).
    """

    system = "pms"

    def __init__(
        self,
        settings: PMSSettings,
        *,
        http: httpx.Client | None = None,
        stop: threading.Event | None = None,
        limits: ListingLimits | None = None,
    ):
        self.settings = settings
        self._stop = stop
        self._limits = limits
        self._base = settings.base_url.rstrip("/")
        self._owns_http = http is None
        # The client made here keeps no cookies: the PMS authenticates every request by
        # its bearer key. A client handed in keeps its own cookie policy.
        self._http = http or TokenClient(timeout=settings.timeout_seconds)
        self._authorization = f"Bearer {settings.api_key_value()}"
        self._retry = RetryPolicy()
        self._retry_unsent = UnsentOnlyPolicy()
        self._gate = AdaptiveConcurrency(settings.max_concurrency, stop=stop)
        self._feed_bodies = True  # ask for include=record until the PMS refuses it
        # Each resource's URL parsed once: httpx parses a string URL twice per request.
        self._resource_urls: dict[str, httpx.URL] = {}

    @property
    def write_concurrency(self) -> int:
        """Creates the engine may have in flight at once now (``pms.max_concurrency``, lowered
        for a while after a 429 or 503); the client is safe to call from that many threads."""
        return self._gate.limit

    # -- plumbing -----------------------------------------------------------

    def _url(self, *parts: str) -> str:
        return "/".join([self._base, *parts])

    def _resource_url(self, resource: str) -> httpx.URL:
        url = self._resource_urls.get(resource)
        if url is None:
            url = self._resource_urls[resource] = httpx.URL(self._url(resource))
        return url

    def _check(self, resource: str) -> None:
        if resource not in RESOURCES:
            raise ConfigError(
                f"the PMS has no resource {resource!r}; known: {', '.join(RESOURCES)}"
            )

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        idempotent: bool = True,
    ) -> httpx.Response:
        """One logical request: auth, classification and bounded retries; raises TolkenError."""
        all_headers = {"Authorization": self._authorization}
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = content_type
        all_headers.update(headers or {})

        def once() -> httpx.Response:
            with self._gate.slot():
                try:
                    response = self._http.request(
                        method,
                        url,
                        params=dict(params) if params else None,
                        content=content,
                        headers=all_headers,
                    )
                except httpx.TransportError as exc:
                    raise classify_transport_error(exc) from exc
            error = classify_response(response)
            if isinstance(error, Retriable):
                if _overloaded(error):
                    self._gate.overloaded(error.retry_after)
            else:
                self._gate.succeeded()
            if error is not None:
                raise error
            return response

        policy = self._retry if idempotent else self._retry_unsent
        try:
            return policy.call(once, stop=self._stop)
        except TransportError as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):
                raise Unreachable(f"cannot reach the PMS at {self._base}", system="pms") from exc
            raise

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ServerError(
                f"the PMS answered {response.request.method} {response.request.url.path} "
                f"with a body that is not JSON",
                system="pms",
                status=response.status_code,
            ) from exc

    # -- Connector protocol -------------------------------------------------

    def resources(self) -> tuple[str, ...]:
        """``customers`` and ``projects``."""
        return RESOURCES

    def list(
        self, resource: str, *, changed_after: datetime | None = None
    ) -> Iterator[RemoteRecord]:
        """Stream every record (or those updated strictly after ``changed_after``), page by page."""
        after = None
        if changed_after is not None:
            if changed_after.tzinfo is None:
                changed_after = changed_after.replace(tzinfo=UTC)
            after = changed_after.isoformat()
        for item in self._list_raw(resource, after):
            yield to_record(resource, item)

    def _list_raw(
        self, resource: str, updated_after: str | None, extra: Mapping[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        self._check(resource)
        params: dict[str, str | int] = {"limit": self.settings.page_size, **(extra or {})}
        if updated_after is not None:
            params["updated_after"] = updated_after
        url = self._url(resource)
        guard = ListingGuard(
            "the PMS", "pms", f"GET {urlsplit(url).path}", stop=self._stop, limits=self._limits
        )
        guard.check_stop()
        seen_cursors: set[str] = set()
        while True:
            page = self._json(self._send("GET", url, params=params))
            raw = page.get("items") if isinstance(page, dict) else None
            if not isinstance(raw, list):
                raise ServerError(f"the PMS list of {resource} has no items array", system="pms")
            items = [item for item in raw if isinstance(item, dict)]
            cursor = page.get("next_cursor")
            # Checked before the items go out, so a page that makes no progress is never used.
            guard.page([str(item.get("id")) for item in items], _last_key(items), more=bool(cursor))
            yield from items
            if not cursor:
                return
            if cursor in seen_cursors:
                guard.fail(f"handed out the cursor {str(cursor)[:40]!r} again")
            seen_cursors.add(cursor)
            params["cursor"] = str(cursor)

    def get(self, resource: str, record_id: str) -> RemoteRecord:
        """Read one record; NotFound when it does not exist."""
        self._check(resource)
        response = self._send("GET", self._url(resource, record_id))
        return to_record(resource, self._json(response))

    def create(
        self, resource: str, data: Mapping[str, Any], *, idempotency_key: str
    ) -> RemoteRecord:
        """POST a record with ``Idempotency-Key``; the same key never makes a second record.

        ``data`` is flat field paths (``{"name": ..., "address.city": ...}``),
        nested into the record body. When it has no ``external_ref`` the key is
        stored there, which is how :meth:`find_by_idempotency_key` finds the
        record after a crash.
        """
        self._check(resource)
        body = nest(data)
        body.setdefault("external_ref", idempotency_key)
        response = self._send(
            "POST",
            self._resource_url(resource),
            body=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        return to_record(resource, self._json(response))

    def find_by_idempotency_key(self, resource: str, idempotency_key: str) -> RemoteRecord | None:
        """The record an earlier ``create`` with this key made, found by its ``external_ref``.

        The contract has no lookup by key, and re-POSTing would create the
        record when the first POST never arrived. So this lists with an
        ``external_ref`` filter (which the reference PMS honours), checks each
        item itself (a PMS may ignore the filter), and falls back to an
        unfiltered listing when a PMS refuses the parameter. Only needed when
        recovering an interrupted create.
        """
        try:
            found = self._find_ref(resource, idempotency_key, {"external_ref": idempotency_key})
        except ValidationFailed:
            found = self._find_ref(resource, idempotency_key, {})
        return found

    def _find_ref(self, resource: str, ref: str, extra: Mapping[str, str]) -> RemoteRecord | None:
        for item in self._list_raw(resource, None, extra):
            if item.get("external_ref") == ref:
                return to_record(resource, item)
        return None

    def update(
        self,
        resource: str,
        record_id: str,
        changes: Mapping[str, Any],
        *,
        version: int | None = None,
    ) -> RemoteRecord:
        """PATCH flat field paths as a JSON Merge Patch (``{"address.city": "Oslo"}`` is sent
        as ``{"address": {"city": "Oslo"}}``; ``None`` clears a field); ``version`` sends
        ``If-Match``.

        Raises StaleVersion (412) when the record moved since ``version``.
        """
        self._check(resource)
        headers = {"If-Match": f'"{version}"'} if version is not None else None
        response = self._send(
            "PATCH",
            self._url(resource, record_id),
            body=nest(changes),
            headers=headers,
            content_type=MERGE_PATCH,
        )
        return to_record(resource, self._json(response))

    def delete(self, resource: str, record_id: str) -> None:
        """DELETE a record (204); NotFound when it is already gone."""
        self._check(resource)
        self._send("DELETE", self._url(resource, record_id))

    def close(self) -> None:
        """Close the HTTP client if this connector made it."""
        if self._owns_http:
            self._http.close()

    # -- webhooks -----------------------------------------------------------

    def register_webhook(self, url: str, secret: str) -> dict[str, Any]:
        """Ask the PMS to POST each change to ``url``, signed with ``secret``; return its answer."""
        response = self._send(
            "POST", self._url("webhooks"), body={"url": url, "secret": secret}, idempotent=False
        )
        answer = self._json(response)
        return dict(answer) if isinstance(answer, dict) else {}

    def webhooks(self) -> tuple[dict[str, Any], ...] | None:
        """The registered webhooks (``GET /webhooks``), or None when the PMS cannot list them.

        Listing and removing webhooks go beyond the contract; the reference
        PMS offers both.
        """
        try:
            answer = self._json(self._send("GET", self._url("webhooks")))
        except (NotFound, RecordError):
            return None
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            return None
        return tuple(dict(i) for i in items if isinstance(i, dict))

    def delete_webhook(self, webhook_id: str) -> None:
        """Remove one webhook; NotFound when it is gone or the PMS cannot remove webhooks."""
        self._send("DELETE", self._url("webhooks", webhook_id))

    def ensure_webhook(self, url: str, secret: str) -> dict[str, Any]:
        """Register ``url`` once: earlier registrations of the same URL are replaced first.

        So restarting ``tolken serve`` does not pile up duplicate deliveries
        (and a changed secret takes effect). A PMS that cannot list webhooks
        just gets the registration.
        """
        for hook in self.webhooks() or []:
            if hook.get("url") == url and hook.get("id") is not None:
                with contextlib.suppress(NotFound):
                    self.delete_webhook(str(hook["id"]))
        return self.register_webhook(url, secret)

    # -- change capture -----------------------------------------------------

    def changes(self, after: int, *, limit: int) -> FeedPage:
        """One raw page of the changes feed: items with ``seq`` strictly greater than ``after``.

        Asks for each upsert's record along (``include=record``, optional in the
        contract): a PMS that sends them saves the engine a GET per change; one
        that ignores the parameter sends bare items, and one that refuses it
        (400 or 422) is asked without it from then on.
        """
        url = self._url("changes")
        params: dict[str, str | int] = {"after": after, "limit": limit}
        response = None
        if self._feed_bodies:
            try:
                response = self._send("GET", url, params={**params, "include": "record"})
            except ValidationFailed:
                self._feed_bodies = False
        if response is None:
            response = self._send("GET", url, params=params)
        page = parse_changes_page(self._json(response))
        if page.has_more and not any(item.seq > after for item in page.items):
            raise Fatal(
                f"the PMS answered GET {urlsplit(url).path} after seq {after} with has_more "
                f"but no newer item: stopped rather than reading the feed forever",
                system="pms",
            )
        return page

    def list_updated_after(self, resource: str, after: str | None) -> Iterator[StampedRecord]:
        """Every record updated strictly after ``after`` (the PMS's own ``updated_at`` text).

        Each record comes with its ``updated_at`` as the PMS spelt it, so a
        position kept from it loses no precision on the way back.
        """
        for item in self._list_raw(resource, after):
            stamp = item.get("updated_at")
            yield StampedRecord(
                to_record(resource, item), stamp if isinstance(stamp, str) else None
            )
