"""Pure conversions between the PMS wire format and tolken values.

Records become :class:`tolken.connectors.base.RemoteRecord` (``version`` from
the record's ``version``, ``changed_at`` from ``updated_at``); changes-feed
items and pages become :class:`~tolken.connectors.base.FeedItem` and
:class:`~tolken.connectors.base.FeedPage` values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tolken.connectors.base import FeedItem, FeedPage, RemoteRecord
from tolken.errors import ServerError

__all__ = [
    "RESOURCES",
    "parse_change",
    "parse_changes_page",
    "parse_timestamp",
    "to_record",
]

RESOURCES = ("customers", "projects")

# Feed items name the record type; PMSs spell it singular or plural.
_TYPE_TO_RESOURCE = {
    "customer": "customers",
    "customers": "customers",
    "project": "projects",
    "projects": "projects",
}


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


def parse_change(item: Mapping[str, Any]) -> FeedItem:
    """A changes-feed item; raises ServerError when it does not follow the contract.

    An upsert's ``record`` (sent with ``include=record``) is kept when it is the
    item's record (an object with the same id); anything else there is ignored.
    """
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
    body = item.get("record")
    record = None
    if op == "upsert" and isinstance(body, Mapping) and str(body.get("id")) == record_id:
        record = to_record(resource, body)
    return FeedItem(
        seq=seq,
        resource=resource,
        id=record_id,
        op="upsert" if op == "upsert" else "delete",
        record=record,
    )


def parse_changes_page(body: Any) -> FeedPage:
    """A ``/changes`` answer as a page; ``last_seq``/``has_more`` None when absent or not typed.

    Raises ServerError when there is no ``items`` array or an item is malformed.
    """
    raw = body.get("items") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise ServerError("the PMS changes feed has no items array", system="pms")
    last_seq, has_more = body.get("last_seq"), body.get("has_more")
    return FeedPage(
        items=tuple(parse_change(item) for item in raw if isinstance(item, dict)),
        last_seq=last_seq if isinstance(last_seq, int) and not isinstance(last_seq, bool) else None,
        has_more=has_more if isinstance(has_more, bool) else None,
    )
