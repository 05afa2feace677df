"""Pure conversions between the PMS wire format and tolken values.

Records become :class:`tolken.connectors.base.RemoteRecord` (``version`` from
the record's ``version``, ``changed_at`` from ``updated_at``); changes-feed
items become :class:`Change` values; a run of feed items collapses to the last
operation per record, which is all change capture needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tolken.connectors.base import RemoteRecord
from tolken.errors import ServerError

__all__ = [
    "RESOURCES",
    "Change",
    "ChangeBatch",
    "ChangesPage",
    "collapse_changes",
    "parse_change",
    "parse_timestamp",
    "to_record",
    "tombstone",
]

RESOURCES = ("customers", "projects")

# Feed items name the record type; PMSs spell it singular or plural.
_TYPE_TO_RESOURCE = {
    "customer": "customers",
    "customers": "customers",
    "project": "projects",
    "projects": "projects",
}


@dataclass(frozen=True)
class Change:
    """One changes-feed item: record ``id`` of ``resource`` was upserted or deleted at ``seq``."""

    seq: int
    resource: str
    id: str
    op: Literal["upsert", "delete"]


@dataclass(frozen=True)
class ChangesPage:
    """One page of the changes feed; pass ``last_seq`` as ``after`` to read on."""

    items: tuple[Change, ...]
    last_seq: int


@dataclass(frozen=True)
class ChangeBatch:
    """What changed in one resource since a cursor: current records, tombstones and the next cursor.

    ``cursor`` is opaque to the engine; store it and pass it back.
    """

    records: tuple[RemoteRecord, ...]
    cursor: str


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp (``Z`` accepted) or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def to_record(resource: str, data: Mapping[str, Any]) -> RemoteRecord:
    """A PMS record body as a RemoteRecord."""
    if "id" not in data:
        raise ServerError(f"the PMS returned a {resource} record without an id", system="pms")
    version = data.get("version")
    return RemoteRecord(
        resource=resource,
        id=str(data["id"]),
        data=dict(data),
        changed_at=parse_timestamp(data.get("updated_at")),
        version=version if isinstance(version, int) else None,
    )


def tombstone(resource: str, record_id: str) -> RemoteRecord:
    """A RemoteRecord saying ``record_id`` no longer exists."""
    return RemoteRecord(resource=resource, id=record_id, data={}, deleted=True)


def parse_change(item: Mapping[str, Any]) -> Change:
    """A changes-feed item; raises ServerError when it does not follow the contract."""
    try:
        seq = int(item["seq"])
        resource = _TYPE_TO_RESOURCE[str(item["type"]).lower()]
        record_id = str(item["id"])
        op = str(item["op"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ServerError(
            f"the PMS changes feed sent a malformed item: {item!r}", system="pms"
        ) from exc
    if op not in ("upsert", "delete"):
        raise ServerError(f"the PMS changes feed sent an unknown op {op!r}", system="pms")
    return Change(
        seq=seq, resource=resource, id=record_id, op="upsert" if op == "upsert" else "delete"
    )


def collapse_changes(changes: Iterable[Change], resource: str) -> dict[str, Change]:
    """The last change per record id of ``resource``, in order of that last change."""
    last: dict[str, Change] = {}
    for change in changes:
        if change.resource == resource:
            # Re-insert so dict order follows the latest seq.
            last.pop(change.id, None)
            last[change.id] = change
    return last
