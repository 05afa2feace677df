"""What the rules share: an HTTP client for the PMS, test-record helpers and the cleanup list.

Every record a rule creates is named ``tolken-check <run tag> <label>`` and
remembered, so the run can delete it at the end whatever happened (see
:mod:`tolken.conformance._cleanup`); every request and its answer is kept as
an :class:`Exchange`, so each rule's result shows what was sent and received.
"""

from __future__ import annotations

import json as jsonlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from tolken.connectors.pms import parse_retry_after, parse_timestamp

__all__ = [
    "CapabilityAbsent",
    "CheckContext",
    "Exchange",
    "Listing",
    "RuleFailed",
    "describe",
    "excerpt",
    "expect",
]

BATCH_SIZE = 6
"""The customers :meth:`CheckContext.batch` creates: a marker and five after it."""
_MAX_429_RETRIES = 3
_MAX_429_WAIT = 5.0
_EXCERPT = 200


class RuleFailed(Exception):
    """Raised inside a rule: the PMS broke the contract; the message says how."""


class CapabilityAbsent(Exception):
    """Raised inside a rule: the PMS lacks the optional capability it checks (not a failure)."""


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Exchange:
    """One request a rule sent and what came back (no headers: they hold the key)."""

    method: str
    target: str
    sent: str
    status: int | None
    received: str

    def line(self) -> str:
        """``POST customers {"name": ...} -> 201 {"id": ...}``."""
        sent = f" {self.sent}" if self.sent else ""
        answer = "no answer" if self.status is None else str(self.status)
        received = f" {self.received}" if self.received else ""
        return f"{self.method} {self.target}{sent} -> {answer}{received}"

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of ``check-pms --json``."""
        return {
            "method": self.method,
            "target": self.target,
            "sent": self.sent,
            "status": self.status,
            "received": self.received,
        }


def expect(condition: object, reason: str) -> None:
    """Fail the current rule with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise RuleFailed(reason)


def describe(response: httpx.Response) -> str:
    """``HTTP 422: <body>`` shortened, for failure reasons."""
    text = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}" + (f": {text[:300]}" if text else "")


@dataclass
class Listing:
    """Every item of a paged listing, and the pages as they came."""

    items: list[dict[str, Any]]
    pages: list[dict[str, Any]]


@dataclass
class CheckContext:
    """The PMS under test and the state one conformance run accumulates."""

    base_url: str
    api_key: str
    http: httpx.Client
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 0
    webhook_public_url: str | None = None
    webhook_wait: float = 10.0
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    created: list[tuple[str, str]] = field(default_factory=list)
    deleted: set[tuple[str, str]] = field(default_factory=set)
    webhooks: list[tuple[str | None, str]] = field(default_factory=list)
    webhook_urls: list[str] = field(default_factory=list)
    """Every URL the run asked the PMS to post to, answered or not (the cleanup sweeps them)."""
    exchanges: list[Exchange] = field(default_factory=list)
    _batch: tuple[dict[str, Any], list[dict[str, Any]]] | None = None

    # -- HTTP ---------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``customers/c_1``."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        auth: str | None = "key",
    ) -> httpx.Response:
        """One request; ``auth`` is ``"key"`` (the real key), None (no header) or a literal header.

        A 429 is waited out a few times (honouring ``Retry-After``, capped), since
        rate limits are not what the rules test.
        """
        all_headers: dict[str, str] = {}
        if auth == "key":
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        elif auth is not None:
            all_headers["Authorization"] = auth
        all_headers.update(headers or {})
        query = "?" + urlencode({k: str(v) for k, v in params.items()}) if params else ""
        target = path.lstrip("/") + query
        sent = excerpt(jsonlib.dumps(json) if json is not None else (content or b"").decode())
        for _ in range(_MAX_429_RETRIES):
            try:
                response = self.http.request(
                    method,
                    self.url(path),
                    json=json,
                    content=content,
                    headers=all_headers,
                    params=dict(params) if params else None,
                )
            except httpx.HTTPError as exc:
                self.exchanges.append(Exchange(method, target, sent, None, type(exc).__name__))
                raise
            self.exchanges.append(
                Exchange(method, target, sent, response.status_code, excerpt(response.text))
            )
            if response.status_code != 429:
                return response
            wait = parse_retry_after(response.headers.get("Retry-After"))
            time.sleep(min(_MAX_429_WAIT, 1.0 if wait is None else wait))
        return response

    # -- test records -------------------------------------------------------

    def name(self, label: str) -> str:
        """The name of a test record: recognisable, unique to this run."""
        return f"tolken-check {self.tag} {label}"

    def track(self, resource: str, body: Any) -> None:
        """Remember a record a response created, for cleanup."""
        if isinstance(body, Mapping) and isinstance(body.get("id"), str | int):
            key = (resource, str(body["id"]))
            if key not in self.created:
                self.created.append(key)

    def forget(self, resource: str, record_id: object) -> None:
        """A rule deleted this record itself (and saw it gone): cleanup need not."""
        self.deleted.add((resource, str(record_id)))

    def create_customer(self, label: str, **fields: Any) -> dict[str, Any]:
        """POST a test customer (kind company unless given) and return the stored record."""
        body = {"kind": "company", "name": self.name(label), **fields}
        response = self.call(
            "POST",
            "customers",
            json=body,
            headers={"Idempotency-Key": f"tolken-check-{self.tag}-{label}"},
        )
        if response.is_success:
            self.track("customers", response.json())
        expect(
            response.status_code in (200, 201),
            f"could not create a test customer: POST /customers gave {describe(response)}",
        )
        record = response.json()
        expect(
            isinstance(record, dict) and "id" in record and "updated_at" in record,
            f"POST /customers returned no record with id and updated_at: {describe(response)}",
        )
        return dict(record)

    def get(self, resource: str, record_id: str) -> dict[str, Any]:
        """GET one record, failing the rule unless it is there."""
        response = self.call("GET", f"{resource}/{record_id}")
        expect(response.status_code == 200, f"GET {resource}/{record_id} gave {describe(response)}")
        return dict(response.json())

    def batch(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A marker customer and five customers written after it (shared by read-only rules)."""
        if self._batch is None:
            marker = self.create_customer("marker")
            records = [self.create_customer(f"page-{n}") for n in range(1, BATCH_SIZE)]
            self._batch = (marker, records)
        return self._batch

    def list_all(
        self,
        resource: str,
        *,
        limit: int,
        updated_after: str | None = None,
        max_pages: int = 200,
        between_pages: Any = None,
    ) -> Listing:
        """Follow ``next_cursor`` to the end, checking each page's shape on the way.

        ``between_pages(listing)`` runs after the first page (to write
        concurrently with the traversal). With ``updated_after``, a record
        older than the bound stops the listing at once: the PMS ignores the
        filter, and paging its whole collection would prove nothing.
        """
        params: dict[str, str | int] = {"limit": limit}
        bound = None
        if updated_after is not None:
            params["updated_after"] = updated_after
            bound = parse_timestamp(updated_after)
        listing = Listing(items=[], pages=[])
        for _ in range(max_pages):
            response = self.call("GET", resource, params=params)
            expect(response.status_code == 200, f"GET /{resource} gave {describe(response)}")
            page = response.json()
            expect(
                isinstance(page, dict)
                and isinstance(page.get("items"), list)
                and "next_cursor" in page,
                f"GET /{resource} did not answer {{items, next_cursor}}: {describe(response)}",
            )
            items = page["items"]
            expect(
                len(items) <= limit,
                f"a page had {len(items)} items although limit={limit} was asked",
            )
            if bound is not None:
                older = [
                    i for i in items if (parse_timestamp(i.get("updated_at")) or bound) < bound
                ]
                expect(
                    not older,
                    f"GET /{resource}?updated_after={updated_after} returned records updated "
                    f"before it (first: {older[0].get('id') if older else ''}); "
                    "the filter seems to be ignored",
                )
            listing.pages.append(page)
            listing.items.extend(items)
            if between_pages is not None and len(listing.pages) == 1:
                between_pages(listing)
            cursor = page["next_cursor"]
            if cursor is None:
                return listing
            expect(isinstance(cursor, str) and cursor, f"next_cursor {cursor!r} is not a string")
            params["cursor"] = cursor
        raise RuleFailed(f"GET /{resource} still had a next_cursor after {max_pages} pages")
