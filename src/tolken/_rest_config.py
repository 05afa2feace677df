"""``pms.rest``: a PMS's own REST API, described for ``pms.connector: rest`` (docs/pms-rest.md).

Pydantic models (``extra="forbid"``) of the section; :mod:`tolken.config`
re-exports them and checks the section against the rest of ``pms:``. Each
model's docstring is the reference of its keys. What the connector does with
them is :mod:`tolken.connectors.rest`.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "REST_CONNECTOR",
    "HttpMethod",
    "RestAuth",
    "RestBody",
    "RestChanges",
    "RestEndpoint",
    "RestErrors",
    "RestIdempotency",
    "RestIdentity",
    "RestPaging",
    "RestResource",
    "RestResources",
    "RestSettings",
]


class _Section(BaseModel):
    # Validators are built when a model is first validated, not at import: a process validates
    # one or two of these models (``tolken sync`` never the fleet's), and every CLI command
    # imports them all.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


REST_CONNECTOR = "rest"

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class RestAuth(_Section):
    """How each request proves who sends it; the secret is ``pms.api_key``.

    ``bearer``: ``Authorization: Bearer <key>``. ``api-key``: the key in the
    header named ``header`` or the query parameter named ``query`` (one of
    them). ``basic``: HTTP basic with ``username`` and the key as password.
    ``none``: no credentials (``pms.api_key`` may then be left out).
    """

    type: Literal["bearer", "api-key", "basic", "none"] = "bearer"
    header: str | None = None
    query: str | None = None
    username: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.type == "api-key" and (self.header is None) == (self.query is None):
            raise PydanticCustomError(
                "rest_api_key_place",
                "auth type api-key needs exactly one of header: (e.g. X-API-Key) or query: "
                "(e.g. api_key)",
            )
        if self.type == "basic" and not self.username:
            raise PydanticCustomError(
                "rest_basic_user", "auth type basic needs username: (the password is pms.api_key)"
            )
        return self


class RestEndpoint(_Section):
    """One operation: HTTP method and path (below ``pms.base_url``; ``{id}`` is the record id)."""

    method: HttpMethod
    path: str


class RestResource(_Section):
    """One resource: its collection ``path`` gives the default endpoints, each replaceable.

    Defaults: list ``GET {path}``, get ``GET {path}/{id}``, create ``POST
    {path}``, update ``PATCH {path}/{id}`` (``PUT`` with update mode ``put``),
    delete ``DELETE {path}/{id}``; ``delete: false`` says the PMS cannot delete.
    ``type`` is the resource's type name in request bodies where
    ``body.request_type_path`` asks for one (JSON:API). ``query`` are constant
    parameters of every list request.
    """

    path: str
    type: str | None = None
    list: RestEndpoint | None = None
    get: RestEndpoint | None = None
    create: RestEndpoint | None = None
    update: RestEndpoint | None = None
    delete: RestEndpoint | Literal[False] | None = None
    query: dict[str, str] = Field(default_factory=dict)


class RestResources(_Section):
    """The two resources tolken syncs with a PMS, by the PMS's own paths."""

    customers: RestResource = RestResource(path="/customers")
    projects: RestResource = RestResource(path="/projects")


class RestBody(_Section):
    """Where records are in answers and where fields go in requests (dotted paths, "" = root).

    ``list_path``: the record array of a list answer (``items``, ``data``,
    ``results``; "" for a root array). ``record_path``: the record in a
    single-record answer. ``fields_path``: the fields inside one record
    (``attributes`` for JSON:API; the id is read beside them). In requests the
    fields go under ``request_path`` (``data.attributes``), the resource's
    ``type`` under ``request_type_path`` (``data.type``) and, in updates, the id
    under ``request_id_path`` (``data.id``).
    """

    list_path: str = ""
    record_path: str = ""
    fields_path: str = ""
    request_path: str = ""
    request_type_path: str | None = None
    request_id_path: str | None = None
    content_type: str = "application/json"


class RestIdentity(_Section):
    """Record identity and concurrency.

    ``id_field`` (beside the fields; a number becomes a string), ``updated_at_field``
    (an ISO 8601 timestamp or unix seconds/milliseconds), ``version_field`` (an
    integer the PMS raises on every write) sent back as ``If-Match: "<n>"``
    (``version_in``: ``if-match``) or in the update body (``body``); or
    ``etag: true``: the ``ETag`` of a GET guards each update by ``If-Match``.
    """

    id_field: str = "id"
    updated_at_field: str | None = "updated_at"
    version_field: str | None = None
    version_in: Literal["if-match", "body"] = "if-match"
    etag: bool = False

    @model_validator(mode="after")
    def _one_version(self) -> Self:
        if self.etag and self.version_field is not None:
            raise PydanticCustomError(
                "rest_two_versions", "use either version_field: or etag: true, not both"
            )
        return self


class RestPaging(_Section):
    """How a list is paged; the page size is ``pms.page_size``.

    ``page``: ``page_param`` counts from ``first_page``; ``offset``:
    ``offset_param`` counts records; both end at an empty page, when
    ``total_path`` (a count in the answer) records are read, or, with
    ``short_page_ends``, at a page shorter than asked (only for a PMS that
    always gives the size asked for: one that caps it lower would end the
    listing early).
    ``cursor``: the next cursor is at ``cursor_path`` in the answer and goes
    back as ``cursor_param`` (a full URL there is followed as it is); ``link``:
    the ``Link`` header's ``rel="next"``; both end when there is no next.
    ``none``: one request returns everything. ``size_param`` names the page
    size parameter (``null``: not sent).
    """

    type: Literal["page", "offset", "cursor", "link", "none"] = "page"
    size_param: str | None = "limit"
    page_param: str = "page"
    first_page: int = Field(default=1, ge=0)
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    total_path: str | None = None
    short_page_ends: bool = False


class RestChanges(_Section):
    """How tolken finds what changed in the PMS.

    ``updated-since``: list with ``param`` (``updated_after``, or operator
    syntax such as ``updated_at_gte``) set to the last ``updated_at`` seen,
    spelt as ``format`` (``iso``: as the PMS wrote it; ``unix``; ``unix-ms``;
    or a ``strftime`` pattern), minus ``overlap_seconds``; ``inclusive`` says
    the PMS returns records at that very time too (re-read records are
    recognised by content and change nothing). ``feed``: the PMS contract's
    changes feed at ``feed_path``. ``none``: a full listing every cycle,
    compared by content.
    """

    type: Literal["updated-since", "feed", "none"] = "updated-since"
    param: str = "updated_after"
    format: str = "iso"
    inclusive: bool = False
    overlap_seconds: float = Field(default=0.0, ge=0)
    feed_path: str = "/changes"


class RestIdempotency(_Section):
    """How a create interrupted by a crash is never made twice: at least one of the two ways.

    ``header``: the PMS honours an idempotency header of this name (the same
    key returns the same record). ``reference_field``: tolken writes its key
    into this field of every record it creates and finds the record again by
    listing with ``lookup_param`` (default: the field's name) set to the key,
    checking each answer itself (a PMS that ignores the filter still works).
    """

    header: str | None = None
    reference_field: str | None = None
    lookup_param: str | None = None

    @model_validator(mode="after")
    def _some_way(self) -> Self:
        if self.header is None and self.reference_field is None:
            raise PydanticCustomError(
                "rest_no_idempotency",
                "the PMS needs either an idempotency header it honours (header: Idempotency-Key) "
                "or a field tolken may write its key into and filter by "
                "(reference_field: external_ref): without one, a crash between a create and "
                "its commit could make a duplicate record",
            )
        return self


class RestErrors(_Section):
    """Where the PMS's human message is in an error body (``error.message``, ``errors.0.detail``).

    Without it (or when it finds nothing) ``detail``, ``message``, ``title``
    and ``error`` are tried, then the raw text.
    """

    message_path: str | None = None


class RestSettings(_Section):
    """``pms.rest``: the PMS's own REST API, described for ``pms.connector: rest``."""

    auth: RestAuth = Field(default_factory=RestAuth)
    resources: RestResources = Field(default_factory=RestResources)
    body: RestBody = Field(default_factory=RestBody)
    identity: RestIdentity = Field(default_factory=RestIdentity)
    update_mode: Literal["merge-patch", "patch", "put"] = "merge-patch"
    paging: RestPaging = Field(default_factory=RestPaging)
    changes: RestChanges = Field(default_factory=RestChanges)
    idempotency: RestIdempotency
    errors: RestErrors = Field(default_factory=RestErrors)

    @model_validator(mode="after")
    def _listing_can_capture(self) -> Self:
        if self.changes.type == "updated-since" and self.identity.updated_at_field is None:
            raise PydanticCustomError(
                "rest_no_updated_at",
                "changes type updated-since needs identity.updated_at_field "
                "(or changes type none: a full listing every cycle)",
            )
        return self
