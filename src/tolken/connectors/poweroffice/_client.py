"""``PowerOfficeClient``: the connector for PowerOffice Go v2 Departments, Customers, Projects.

The shell around the pure parts of this package: one ``httpx.Client``, one
request function (:meth:`PowerOfficeClient._send`) through which every call
passes, the request budget of the subscription key (a
:class:`~tolken.connectors.ratelimit.RateLimiter`: acquired before every
request, token requests included, and paused for everyone using the key when
PowerOffice answers 429), the retry policy and the single classifier.

Retry rules (bounded by :class:`~tolken.connectors._http.RetryPolicy`):

* GET, PATCH (every operation is a ``replace``, so re-sending is harmless) and
  DELETE are retried on 429, 5xx and transport failures.
* A POST is retried only when PowerOffice certainly did not process it: a 429
  (the gateway refuses before the API sees the request), a failure to connect,
  or a 401 answered before the API (retried once with a fresh token). A POST
  that failed ambiguously (5xx, read timeout, dropped connection) is *not*
  re-sent: the error is raised so the caller can look the record up with
  :meth:`PowerOfficeClient.find_by_idempotency_key` first.
* Any request answered 401 gets one fresh token and one more try.

Idempotency keys: Customers carry the key in ``ExternalImportReference`` (unique
in PowerOffice, at most 50 characters; longer keys are shortened to a stable
digest by :func:`external_reference`). Departments and Projects have no such
field, so their ``Code`` is the key: ``create`` requires ``idempotency_key ==
data["Code"]`` and ``find_by_idempotency_key`` looks the record up by code.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from tolken._closing import Closeable
from tolken.config import PowerOfficeSettings
from tolken.connectors._http import RetryPolicy, parse_http_date
from tolken.connectors._listing import ListingGuard
from tolken.connectors.base import RemoteRecord
from tolken.connectors.fields import nest
from tolken.connectors.poweroffice import _schema
from tolken.connectors.poweroffice._auth import TokenSource, parse_token_response
from tolken.connectors.poweroffice._errors import SYSTEM, classify, never_sent
from tolken.connectors.poweroffice._limits import check_lengths
from tolken.connectors.poweroffice._paging import (
    Page,
    PageRequest,
    guarded,
    paginate,
    paginate_ahead,
    parse_pagination_header,
)
from tolken.connectors.poweroffice._patch import build_patch
from tolken.connectors.poweroffice._records import canonical_key, to_record
from tolken.connectors.ratelimit import RateLimiter, shared_limiter
from tolken.errors import (
    FieldError,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    Unreachable,
    ValidationFailed,
)

__all__ = ["PowerOfficeClient", "external_reference", "format_filter_timestamp"]

MAX_EXTERNAL_REFERENCE = 50
USER_AGENT = "tolken (PowerOffice Go integration)"


def external_reference(idempotency_key: str) -> str:
    """The ``ExternalImportReference`` for a key: the key itself when it fits in 50
    characters, else a stable ``tolken-<sha256 prefix>`` of the key."""
    if len(idempotency_key) <= MAX_EXTERNAL_REFERENCE:
        return idempotency_key
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"tolken-{digest[: MAX_EXTERNAL_REFERENCE - 7]}"


def format_filter_timestamp(moment: datetime) -> str:
    """A ``...DateTimeOffsetGreaterThan`` value: ISO 8601 with offset (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="microseconds")


def _check_fields(
    resource: str, data: Mapping[str, Any], allowed: frozenset[str], dto: str
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in data.items():
        field = canonical_key(key)
        if field not in allowed:
            raise ValidationFailed(
                f"cannot create {resource} with {field}: not a field of {dto}",
                system=SYSTEM,
                field_errors=[FieldError(field, f"not a field of {dto}")],
            )
        if field == "MailAddress" and isinstance(value, Mapping):
            value = _check_fields(resource, value, _schema.ADDRESS_PATCH, "ContactAddressPostDto")
        body[field] = value
    return body


def _record_id(item: object) -> str:
    """A listed row's id for the listing guard, read without normalising the whole row."""
    if not isinstance(item, Mapping):
        return repr(item)
    if "Id" in item:
        return str(item["Id"])
    for key, value in item.items():
        if isinstance(key, str) and key.lower() == "id":
            return str(value)
    return "None"


class PowerOfficeClient(Closeable):
    """Connector for one PowerOffice Go client (company); see the module docstring.

    ``http`` lets tests hand in a client (e.g. ``starlette.testclient.TestClient``);
    URLs are always built from ``settings``. ``rate_limiter`` defaults to this
    process's in-memory budget of the subscription key
    (:func:`~tolken.connectors.ratelimit.shared_limiter`); ``retry`` to a
    :class:`~tolken.connectors._http.RetryPolicy`; ``clock`` (monotonic seconds)
    drives token renewal. ``read_ahead`` fetches the next list page while the
    caller processes the current one (at most two pages in memory). ``stop``
    (a :class:`threading.Event`) ends retry waits and listings with
    :class:`~tolken.errors.Stopped` once set.
    """

    system = SYSTEM

    def __init__(
        self,
        settings: PowerOfficeSettings,
        *,
        http: httpx.Client | None = None,
        rate_limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        read_ahead: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self._stop = stop
        self._read_ahead = read_ahead
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=settings.timeout_seconds)
        self._base = settings.base_url.rstrip("/")
        self._subscription_key = settings.subscription_key.get_secret_value()
        self._limiter: RateLimiter = rate_limiter or shared_limiter(
            self._subscription_key, settings.requests_per_second
        )
        self.retry = retry or RetryPolicy()
        self.tokens = TokenSource(self._fetch_token, clock=clock)
        self._server_time: datetime | None = None

    def server_time(self) -> datetime | None:
        """PowerOffice's clock as its latest answer's ``Date`` header told it (None before any).

        Never later than PowerOffice's clock now; the engine's cursor uses it to
        tell when the overlap window after a change has passed.
        """
        return self._server_time

    # -- plumbing --------------------------------------------------------------
    def _secrets(self) -> list[str]:
        values = [
            self.settings.application_key.get_secret_value(),
            self.settings.client_key.get_secret_value(),
            self._subscription_key,
        ]
        return [v for v in (*values, self.tokens.current) if v]

    def _raise_for(self, outcome: httpx.Response | httpx.HTTPError, *, token: bool) -> None:
        if isinstance(outcome, httpx.Response):
            # The earliest of repeated Date headers: the clock must never be overstated.
            dates = [parse_http_date(v) for v in outcome.headers.get_list("Date")]
            said = min((d for d in dates if d is not None), default=None)
            if said is not None and (self._server_time is None or said > self._server_time):
                self._server_time = said
        error = classify(outcome, token_request=token, secrets=self._secrets())
        if error is None:
            return
        if isinstance(error, RateLimited):
            # Everyone using this subscription key pauses, not only this request.
            self._limiter.pause(self.retry.retry_after_wait(error.retry_after))
        if isinstance(outcome, httpx.HTTPError):
            raise error from outcome
        raise error

    def _fetch_token(self) -> tuple[str, float]:
        self._limiter.acquire()
        try:
            response = self._http.post(
                self.settings.token_url,
                auth=(
                    self.settings.application_key.get_secret_value(),
                    self.settings.client_key.get_secret_value(),
                ),
                headers={
                    "Ocp-Apim-Subscription-Key": self._subscription_key,
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                },
                data={"grant_type": "client_credentials"},
            )
        except httpx.HTTPError as exc:
            self._raise_for(exc, token=True)
            raise  # pragma: no cover - _raise_for always raises for transport errors
        self._raise_for(response, token=True)
        return parse_token_response(response)

    def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        on_send: Callable[[], None],
    ) -> httpx.Response:
        headers = {
            "Ocp-Apim-Subscription-Key": self._subscription_key,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body).encode()
            patch = method == "PATCH"
            headers["Content-Type"] = "application/json-patch+json" if patch else "application/json"
        url = f"{self._base}{path}"
        query = dict(params) if params else None

        def send() -> httpx.Response:
            token = self.tokens.get()
            self._limiter.acquire()
            on_send()
            try:
                response = self._http.request(
                    method,
                    url,
                    params=query,
                    content=content,
                    headers={**headers, "Authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError as exc:
                self._raise_for(exc, token=False)
                raise  # pragma: no cover - _raise_for always raises for transport errors
            if response.status_code == 401:
                self.tokens.invalidate(token)
            return response

        response = send()
        if response.status_code == 401:
            # Expired or revoked early: one new token, one more try.
            response = send()
        self._raise_for(response, token=False)
        return response

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        on_retry_404_ok: bool = False,
    ) -> httpx.Response:
        """Send one API request under the rate limit and the retry rules of the module doc."""
        attempts = 0
        sent = False  # did the last attempt get as far as sending the request?

        def mark_sent() -> None:
            nonlocal sent
            sent = True

        def once() -> httpx.Response:
            nonlocal attempts, sent
            attempts += 1
            sent = False
            try:
                return self._send_once(method, path, params, body, mark_sent)
            except NotFound:
                if on_retry_404_ok and attempts > 1:
                    # An earlier attempt did it; its answer was lost.
                    return httpx.Response(204)
                raise

        def retry_if(exc: Exception) -> bool:
            if method != "POST":
                return True
            # A failure while getting a token happens before the POST is sent.
            return not sent or isinstance(exc, RateLimited) or never_sent(exc)

        try:
            return self.retry.call(once, retry_if=retry_if, stop=self._stop)
        except TransportError as exc:
            if never_sent(exc):
                raise Unreachable(
                    f"PowerOffice cannot be reached: {exc.message}", system=SYSTEM
                ) from exc
            if method == "POST" and sent:
                exc.message += " (the create may have happened: look it up before retrying)"
            raise
        except ServerError as exc:
            if method == "POST" and sent:
                exc.message += " (the create may have happened: look it up before retrying)"
            raise

    def integration_information(self) -> dict[str, Any]:
        """``GET /ClientIntegrationInformation``: the client and the privileges granted to us.

        ``ValidPrivileges`` and ``InvalidPrivileges`` (lists of names), ``ClientName``, ...
        """
        found: dict[str, Any] = self._send("GET", "/ClientIntegrationInformation").json()
        return found

    # -- the Connector protocol -------------------------------------------------
    def resources(self) -> Sequence[str]:
        """``Departments``, ``Customers``, ``Projects``."""
        return tuple(_schema.RESOURCES)

    def list(
        self, resource: str, *, changed_after: datetime | None = None
    ) -> Iterator[RemoteRecord]:
        """Stream every record of ``resource`` (or those whose ``LastChangedDateTimeOffset`` is
        strictly after ``changed_after``), at most two pages in memory at a time."""
        spec = _schema.resource_spec(resource)
        params: dict[str, Any] = {}
        if changed_after is not None:
            params["lastChangedDateTimeOffsetGreaterThan"] = format_filter_timestamp(changed_after)
        for page in self._pages(spec.name, params):
            for raw in page.items:
                yield to_record(spec.name, raw)

    def _pages(self, name: str, params: Mapping[str, Any]) -> Iterator[Page[Mapping[str, Any]]]:
        def fetch(request: PageRequest) -> Page[Mapping[str, Any]]:
            query = {**params, "PageNumber": request.number, "PageSize": request.size}
            response = self._send("GET", f"/{name}", params=query)
            items: Any = [] if response.status_code == 204 or not response.content else None
            if items is None:
                try:
                    items = response.json()
                except ValueError:
                    items = None
            if not isinstance(items, list):
                raise ServerError(
                    f"PowerOffice answered GET /{name} with something other than a JSON array",
                    system=SYSTEM,
                    status=response.status_code,
                )
            header = parse_pagination_header(response.headers.get("X-Pagination"))
            return Page(request, response.status_code, items, header)

        path = urlsplit(f"{self._base}/{name}").path
        guard = ListingGuard("PowerOffice", SYSTEM, f"GET {path}", stop=self._stop)
        pager = paginate_ahead if self._read_ahead else paginate
        return pager(guarded(fetch, guard, _record_id), PageRequest(1, self.settings.page_size))

    def get(self, resource: str, record_id: str) -> RemoteRecord:
        """Read one record; :class:`~tolken.errors.NotFound` when it does not exist."""
        spec = _schema.resource_spec(resource)
        response = self._send("GET", f"/{spec.name}/{record_id}")
        return to_record(spec.name, response.json())

    def create(
        self, resource: str, data: Mapping[str, Any], *, idempotency_key: str
    ) -> RemoteRecord:
        """Create a record from flat field paths (``{"Name": ..., "MailAddress.City": ...}``,
        nested into the PascalCase POST body); the same key never yields a second record.
        A value longer than the spec's ``maxLength`` is refused with
        :class:`~tolken.errors.ValidationFailed` before anything is sent.

        When PowerOffice refuses the create (400) and a record with the key
        already exists (a retried create), that record is returned instead.
        """
        spec = _schema.resource_spec(resource)
        body = _check_fields(spec.name, nest(data), spec.post, f"{spec.entity}PostDto")
        if spec.idempotency_field == "ExternalImportReference":
            body["ExternalImportReference"] = external_reference(idempotency_key)
        elif body.get("Code") != idempotency_key:
            raise ValueError(
                f"PowerOffice {spec.name} have no reference field: their Code is the "
                f"idempotency key, so idempotency_key must equal data['Code']"
            )
        check_lengths(spec, "create", "PostDto", body)
        try:
            response = self._send("POST", f"/{spec.name}", body=body)
        except ValidationFailed:
            existing = self.find_by_idempotency_key(spec.name, idempotency_key)
            if existing is not None:
                return existing
            raise
        return to_record(spec.name, response.json())

    def find_by_idempotency_key(self, resource: str, idempotency_key: str) -> RemoteRecord | None:
        """The record an earlier ``create`` with this key made: by ``ExternalImportReference``
        for Customers, by ``Code`` for Departments and Projects."""
        spec = _schema.resource_spec(resource)
        wanted = (
            external_reference(idempotency_key)
            if spec.idempotency_field == "ExternalImportReference"
            else idempotency_key
        )
        # A comma would split the code-list filters; such a key is found by a full listing.
        params = {} if "," in wanted else {spec.idempotency_filter: wanted}
        for page in self._pages(spec.name, params):
            for raw in page.items:
                record = to_record(spec.name, raw)
                if record.data.get(spec.idempotency_field) == wanted:
                    return record
        return None

    def update(
        self,
        resource: str,
        record_id: str,
        changes: Mapping[str, Any],
        *,
        version: int | None = None,  # noqa: ARG002 - the Connector protocol; PowerOffice has none
    ) -> RemoteRecord:
        """Apply flat field paths (``{"MailAddress.City": "Oslo"}``) as a JSON Patch of PatchDto
        fields (PowerOffice has no versions, so ``version`` is ignored); returns the record as
        PowerOffice then holds it. Values over the spec's ``maxLength`` are refused unsent."""
        spec = _schema.resource_spec(resource)
        patch = build_patch(spec.name, changes)
        if not patch:
            return self.get(spec.name, record_id)
        values = {op["path"].strip("/").replace("/", "."): op["value"] for op in patch}
        check_lengths(spec, "update", "PatchDto", values)
        response = self._send("PATCH", f"/{spec.name}/{record_id}", body=patch)
        try:
            raw = response.json() if response.content else None
        except ValueError:
            raw = None
        if isinstance(raw, Mapping) and any(key.lower() == "id" for key in raw):
            return to_record(spec.name, raw)
        return self.get(spec.name, record_id)

    def delete(self, resource: str, record_id: str) -> None:
        """Delete a record; 200 and 204 are success (a 404 after a lost answer too)."""
        spec = _schema.resource_spec(resource)
        self._send("DELETE", f"/{spec.name}/{record_id}", on_retry_404_ok=True)

    def close(self) -> None:
        """Close the HTTP client if this connector created it."""
        if self._owns_http:
            self._http.close()
