"""Pure conversions between a described PMS's wire shapes and tolken values (``pms.rest``).

Dotted paths (``data.attributes``, ``errors.0.message``; "" is the whole
value) say where things are; :func:`at` reads one, :func:`put` builds a
request body around the fields. A record is read from a list item or a
single-record answer by :func:`to_record` (the id beside the fields, numbers
made strings; ``updated_at`` and ``version`` from the fields); timestamps
are read by :func:`parse_updated_at` (ISO 8601 or unix seconds/milliseconds)
and spelt for a filter by :func:`format_since`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tolken.config import RestBody, RestIdentity
from tolken.connectors.base import RemoteRecord, StampedRecord
from tolken.errors import ServerError

__all__ = [
    "MISSING",
    "at",
    "content_version",
    "format_since",
    "parse_updated_at",
    "put",
    "record_fields",
    "stamp_of",
    "to_record",
    "wrap",
]

SYSTEM = "pms"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What :func:`at` gives for a path that is not there (``None`` is a value)."""


def at(value: Any, path: str | None) -> Any:
    """The value at dotted ``path`` ("" or None: ``value`` itself), or :data:`MISSING`.

    A numeric part indexes a list (``errors.0.message``).
    """
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def put(target: dict[str, Any], path: str | None, value: Any) -> dict[str, Any]:
    """``target`` with ``value`` placed at dotted ``path`` (objects made on the way); "" replaces.

    Returns the new root (``value`` itself when ``path`` is empty).
    """
    if not path:
        return dict(value) if isinstance(value, Mapping) else value
    node = target
    *parents, last = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value
    return target


def wrap(
    body: RestBody,
    fields: Mapping[str, Any],
    *,
    type_name: str | None = None,
    record_id: str | None = None,
) -> dict[str, Any]:
    """A request body: ``fields`` at ``request_path``, the type and (for updates) id beside."""
    out: dict[str, Any] = {}
    out = put(out, body.request_path, dict(fields))
    if body.request_type_path and type_name is not None:
        out = put(out, body.request_type_path, type_name)
    if body.request_id_path and record_id is not None:
        out = put(out, body.request_id_path, record_id)
    return out


def record_fields(body: RestBody, item: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of one record (``fields_path`` inside it; {} when they are not an object)."""
    fields = at(item, body.fields_path)
    return dict(fields) if isinstance(fields, Mapping) else {}


def parse_updated_at(value: Any) -> datetime | None:
    """An ISO 8601 text (``Z`` accepted, no offset read as UTC) or unix seconds or milliseconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 100_000_000_000 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def stamp_of(value: Any) -> str | None:
    """A record's modification time as a listing position: its ISO text as the PMS wrote it,
    or ISO 8601 made from a unix number (None: not a time)."""
    if isinstance(value, str):
        return value if parse_updated_at(value) is not None else None
    parsed = parse_updated_at(value)
    return parsed.isoformat() if parsed is not None else None


def format_since(stamp: str, fmt: str, overlap: timedelta) -> str:
    """The filter value for "changed since ``stamp``", ``overlap`` earlier, spelt as ``fmt``.

    ``iso`` keeps the PMS's own text when there is no overlap (no precision
    lost); ``unix`` and ``unix-ms`` are numbers; anything else is a
    ``strftime`` pattern (in UTC).
    """
    when = parse_updated_at(stamp)
    if when is None:
        return stamp
    if fmt == "iso" and not overlap:
        return stamp
    when = (when - overlap).astimezone(UTC)
    if fmt == "iso":
        return when.isoformat()
    if fmt == "unix":
        return str(int(when.timestamp()))
    if fmt == "unix-ms":
        return str(int(when.timestamp() * 1000))
    return when.strftime(fmt)


def to_record(
    resource: str,
    item: Any,
    body: RestBody,
    identity: RestIdentity,
) -> StampedRecord:
    """One record of ``resource`` (a list item or a single answer's record) and its stamp.

    ``data`` is the record's fields with its id under ``id_field``; raises
    ServerError when the record is not an object or has no id.
    """
    if not isinstance(item, Mapping):
        raise ServerError(f"the PMS sent a {resource} record that is not an object", system=SYSTEM)
    raw_id = at(item, identity.id_field)
    if raw_id is MISSING or raw_id is None or isinstance(raw_id, bool | dict | list):
        raise ServerError(
            f"the PMS sent a {resource} record without an id at {identity.id_field!r}",
            system=SYSTEM,
        )
    data = record_fields(body, item)
    data.setdefault(identity.id_field.rsplit(".", 1)[-1], raw_id)
    updated = at(data, identity.updated_at_field) if identity.updated_at_field else MISSING
    version: int | None = content_version(data) if identity.etag else None
    if identity.version_field:
        raw = at(data, identity.version_field)
        if isinstance(raw, int) and not isinstance(raw, bool):
            version = raw
        elif isinstance(raw, str) and raw.isdigit():
            version = int(raw)
    record = RemoteRecord(
        resource=resource,
        id=str(raw_id),
        data=data,
        changed_at=parse_updated_at(updated),
        version=version,
    )
    return StampedRecord(record, stamp_of(updated) if updated is not MISSING else None)


def content_version(fields: Mapping[str, Any]) -> int:
    """A record's version made from its content (a stable 53-bit hash of its fields).

    With ``identity.etag`` the PMS's versions are opaque ETags that listings do
    not carry; a version made from the content is the same whether the record
    was listed or read, and changes whenever the record does.
    """
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "big") >> 1
