"""The one protocol every connector implements, PowerOffice and PMS alike.

A connector is a thin, stateless client of one remote system: it lists, reads
and writes records and classifies every failure into :mod:`tolken.errors`.
It never decides what to sync and holds no sync state (cursors, shadows and
links belong to the engine). Connectors are found through the
``tolken.connectors`` entry-point group; the built-in ones are registered
there too, so there is no special case.

Beyond :class:`Connector`, a connector may offer optional capabilities, each a
small protocol the engine checks with ``isinstance``:

- :class:`ChangeFeed`: a feed of numbered changes (the PMS contract's
  ``/changes``), read raw, page by page, as :class:`FeedPage` values. Without
  it the engine captures changes by the updated-after listing,
  ``Connector.list(changed_after=...)``.
- :class:`UpdatedAfterListing`: that listing with the bound in the system's
  own timestamp spelling, so no precision is lost on the way back.
- :class:`WebhookSource`: the system pushes changes to a URL (``tolken serve``).
- :class:`ConcurrentWrites`: the connector may be called from several threads
  at once, so the engine creates many records with that many in flight.
- :class:`ServerClock`: the system's own clock, as its answers' ``Date``
  headers tell it (the PowerOffice cursor uses it to end its overlap re-reads).

Where the engine keeps its position in a feed or listing, and how that
position moves, is the engine's business (:mod:`tolken.engine.cursor`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "ChangeFeed",
    "ConcurrentWrites",
    "Connector",
    "FeedItem",
    "FeedOp",
    "FeedPage",
    "RemoteRecord",
    "ServerClock",
    "StampedRecord",
    "UpdatedAfterListing",
    "WebhookSource",
    "load_connector_class",
]

ENTRY_POINT_GROUP = "tolken.connectors"


@dataclass(frozen=True)
class RemoteRecord:
    """One record as a remote system holds it.

    ``data`` uses the system's canonical key spelling (PascalCase for
    PowerOffice, whatever reads came back as being normalised to it; the
    contract's snake_case for a PMS). ``changed_at`` is the system's own
    modification time (used by the ``newest-wins`` conflict policy) and
    ``version`` the optimistic-concurrency token where the system has one.
    """

    resource: str
    id: str
    data: Mapping[str, Any]
    changed_at: datetime | None = None
    version: int | None = None
    deleted: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Connector(Protocol):
    """What the engine needs from a system. All methods may raise TolkenError subclasses."""

    system: str
    """Short name used in messages, metrics and the store: ``poweroffice`` or ``pms``."""

    def resources(self) -> Sequence[str]:
        """Resource names this connector serves (``Customers``..., ``customers``...)."""
        ...

    def list(
        self, resource: str, *, changed_after: datetime | None = None
    ) -> Iterator[RemoteRecord]:
        """Stream every record (or those changed strictly after ``changed_after``), page by page."""
        ...

    def get(self, resource: str, record_id: str) -> RemoteRecord:
        """Read one record; raises :class:`tolken.errors.NotFound` when it does not exist."""
        ...

    def create(
        self, resource: str, data: Mapping[str, Any], *, idempotency_key: str
    ) -> RemoteRecord:
        """Create a record from flat dotted field paths; the same ``idempotency_key`` never
        yields a second record.

        ``data`` is ``{"Name": "Acme", "MailAddress.City": "Oslo"}`` in the
        system's own field spelling; the connector builds its wire body from it
        (see :mod:`tolken.connectors.fields`).
        """
        ...

    def find_by_idempotency_key(self, resource: str, idempotency_key: str) -> RemoteRecord | None:
        """Find the record an earlier (perhaps interrupted) ``create`` made, if any."""
        ...

    def update(
        self,
        resource: str,
        record_id: str,
        changes: Mapping[str, Any],
        *,
        version: int | None = None,
    ) -> RemoteRecord:
        """Change only the given fields, named by flat dotted field paths.

        ``changes`` is ``{"MailAddress.City": "Oslo", "Name": "Acme"}`` (``None``
        clears a field); the connector builds its wire body from it (a JSON
        Patch, a nested merge patch: see :mod:`tolken.connectors.fields`).
        ``version`` makes the write conditional where the system supports it
        (raises :class:`tolken.errors.StaleVersion` when the record moved).
        """
        ...

    def delete(self, resource: str, record_id: str) -> None:
        """Delete a record (never called by the engine by default)."""
        ...

    def close(self) -> None:
        """Release the HTTP client if the connector created it."""
        ...


FeedOp = Literal["upsert", "delete"]
"""What a feed item says happened to its record."""


@dataclass(frozen=True)
class FeedItem:
    """One changes-feed item: record ``id`` of ``resource`` was upserted or deleted at ``seq``.

    ``resource`` is the connector's resource name (``customers``), whatever the
    system calls the record type on the wire. ``record``: the record as a read
    of it returns it, when the feed sent it along (the PMS contract's optional
    ``include=record``); None otherwise, and the engine reads the record itself.
    """

    seq: int
    resource: str
    id: str
    op: FeedOp
    record: RemoteRecord | None = None


@dataclass(frozen=True)
class FeedPage:
    """One page of a changes feed, as the system sent it.

    ``items`` have ``seq`` strictly greater than the ``after`` asked for.
    ``last_seq`` and ``has_more`` are what the system reported (None when it
    left them out); the engine continues from the last item it actually
    received, and stops at an empty page or when ``has_more`` is false.
    """

    items: tuple[FeedItem, ...]
    last_seq: int | None = None
    has_more: bool | None = None


@runtime_checkable
class ChangeFeed(Protocol):
    """Optional: a feed of every change, numbered by a strictly increasing ``seq``.

    A connector with a feed lets the engine read only what changed since its
    last position, deletes included (items with ``op="delete"``); the engine
    GETs each upserted record unless its item carries the record. Raises
    TolkenError subclasses like any read.
    """

    def changes(self, after: int, *, limit: int) -> FeedPage:
        """At most ``limit`` items with ``seq`` strictly greater than ``after``, oldest first."""
        ...


@dataclass(frozen=True)
class StampedRecord:
    """A listed record and its modification time spelt as the system spelt it (None: none)."""

    record: RemoteRecord
    stamp: str | None


@runtime_checkable
class UpdatedAfterListing(Protocol):
    """Optional: :meth:`Connector.list` by ``changed_after`` in the system's own spelling.

    ``after`` is a ``stamp`` an earlier listing returned (None: every record);
    handing the system back its own text keeps precision a ``datetime`` would
    round off.
    """

    def list_updated_after(self, resource: str, after: str | None) -> Iterator[StampedRecord]:
        """Every record of ``resource`` modified strictly after ``after``, page by page."""
        ...


@runtime_checkable
class WebhookSource(Protocol):
    """Optional: the system POSTs each change to a URL, signed with a shared secret."""

    def ensure_webhook(self, url: str, secret: str) -> Mapping[str, object]:
        """Register ``url`` once (replacing earlier registrations of it); the system's answer."""
        ...


@runtime_checkable
class ConcurrentWrites(Protocol):
    """Optional: the connector is safe to call from ``write_concurrency`` threads at once.

    Without it the engine makes one request at a time. The value may change
    while the engine runs (a connector lowers it while its system is overloaded).
    """

    @property
    def write_concurrency(self) -> int:
        """How many creates may be in flight at once now (at least 1)."""
        ...


@runtime_checkable
class ServerClock(Protocol):
    """Optional: the remote system's own clock, from the ``Date`` header of its answers."""

    def server_time(self) -> datetime | None:
        """The system's time as its latest answer said (None before any answer).

        Never later than the system's clock at the moment of the call.
        """
        ...


def load_connector_class(name: str) -> type[Connector]:
    """Return the connector class registered under ``name`` in ``tolken.connectors``."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            cls: type[Connector] = ep.load()
            return cls
    known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    from tolken.errors import ConfigError

    raise ConfigError(f"unknown connector {name!r}; installed: {', '.join(known) or 'none'}")
