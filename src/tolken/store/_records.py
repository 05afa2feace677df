"""Plain values the store hands to the engine, and the store's own errors.

Everything here is immutable and holds JSON-able Python (strings, numbers,
booleans, ``None``, lists, dicts) plus timezone-aware datetimes. Links and
shadows are named tuples because a reconcile loads 100,000 of them at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from tolken.errors import RecordError
from tolken.vocabulary import Direction, FlowId, LinkState, Side

__all__ = [
    "FLOW_PMS_RESOURCE",
    "AlreadySettled",
    "ConflictRecord",
    "Direction",
    "DuplicateLink",
    "DuplicatePendingCreate",
    "Failure",
    "FlowCounts",
    "FlowId",
    "HistoryEntry",
    "Link",
    "LinkState",
    "NewLink",
    "PendingCreate",
    "PendingState",
    "Run",
    "RunStatus",
    "Shadow",
    "Side",
    "UnknownRecord",
    "Winner",
]

PendingState = Literal["pending", "done", "abandoned"]
Winner = Literal["poweroffice", "pms", "parked"]
RunStatus = Literal["running", "ok", "failed", "stopped"]

# Departments and customers are both PMS customers, so a PMS id is unique per resource.
FLOW_PMS_RESOURCE: Mapping[str, str] = {
    "departments": "customers",
    "customers": "customers",
    "projects": "projects",
}


class DuplicateLink(RecordError):
    """The PowerOffice or PMS record is already linked; links are never duplicated."""


class DuplicatePendingCreate(RecordError):
    """A create for this source record is already pending (another worker, or a crash)."""


class UnknownRecord(LookupError):
    """A store row (link, run, conflict, pending create) with that id or key does not exist."""


class AlreadySettled(ValueError):
    """The conflict is no longer parked (a person or its policy settled it); nothing changed."""

    def __init__(self, message: str, conflict: ConflictRecord) -> None:
        super().__init__(message)
        self.conflict = conflict


class Link(NamedTuple):
    """One PowerOffice record paired with one PMS record, for good."""

    id: int
    tenant: str
    flow: FlowId
    poweroffice_id: str
    pms_id: str
    state: LinkState
    created_at: datetime
    updated_at: datetime


class Shadow(NamedTuple):
    """The last synchronised state of a link.

    ``fields`` is flat, keyed by mapped PMS-side path (``{"address.city": "Oslo"}``);
    each side has the version, content hash and modification time it had when
    tolken last saw or wrote it.
    """

    fields: dict[str, Any]
    poweroffice_version: int | None = None
    poweroffice_hash: str | None = None
    poweroffice_changed_at: datetime | None = None
    pms_version: int | None = None
    pms_hash: str | None = None
    pms_changed_at: datetime | None = None


class NewLink(NamedTuple):
    """A link to make with its first shadow and the history entry of the write that made it.

    For :meth:`~tolken.store.TenantStore.create_links_with_history`: ``direction``,
    ``action``, ``fields`` and ``reason`` are those of a :class:`HistoryEntry`.
    """

    poweroffice_id: str
    pms_id: str
    shadow: Shadow | None
    direction: Direction
    action: str
    fields: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class OpenWork:
    """The flows with creates still pending and with open failures (one query per cycle)."""

    pending_creates: frozenset[FlowId] = frozenset()
    failures: frozenset[FlowId] = frozenset()


@dataclass(frozen=True)
class PendingCreate:
    """A create recorded before its POST; ``created_id`` is set once it succeeded."""

    id: int
    tenant: str
    flow: FlowId
    target: Side
    source_id: str
    idempotency_key: str
    state: PendingState
    created_id: str | None
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class Failure:
    """A parked record: what failed, the remote message verbatim, and when to retry."""

    id: int
    tenant: str
    flow: FlowId
    side: Side
    record_id: str
    error_class: str
    message: str
    status: int | None
    details: dict[str, Any] | None
    attempts: int
    next_attempt_at: datetime
    first_seen: datetime
    last_seen: datetime
    resolved: bool
    resolved_at: datetime | None


@dataclass(frozen=True)
class ConflictRecord:
    """A field edited on both sides: both values, the shadow, the policy and who won."""

    id: int
    tenant: str
    flow: FlowId
    link_id: int
    field: str
    poweroffice_value: Any
    pms_value: Any
    shadow_value: Any
    policy: str
    winner: Winner
    resolved: bool
    run_id: int | None
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class Run:
    """One sync cycle: per-flow counts (``created``, ``linked``, ...) and requests per system."""

    id: int
    tenant: str
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    counts: dict[str, dict[str, int]]
    requests: dict[str, int]
    error: str | None


@dataclass(frozen=True)
class HistoryEntry:
    """One write tolken made for a link: where to, what, which fields and why."""

    link_id: int
    direction: Direction
    action: str
    fields: dict[str, Any]
    reason: str
    run_id: int | None = None
    at: datetime | None = None
    id: int | None = None


@dataclass(frozen=True)
class FlowCounts:
    """Dashboard figures for one flow of one tenant."""

    links: dict[str, int] = field(default_factory=dict)
    open_failures: int = 0
    parked_conflicts: int = 0
    pending_creates: int = 0

    @property
    def active_links(self) -> int:
        return self.links.get("active", 0)
