"""Turning PowerOffice JSON into :class:`~tolken.connectors.base.RemoteRecord` (pure).

PowerOffice answers PascalCase per the spec, but camelCase has been seen in
nested objects and GET-by-id bodies. Keys are therefore read
case-insensitively and normalised to the spec's spelling; keys the spec does
not know get their first letter upper-cased (``fooBar`` -> ``FooBar``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from tolken.connectors.base import RemoteRecord
from tolken.connectors.poweroffice import _schema
from tolken.errors import ServerError

__all__ = [
    "canonical_key",
    "changed_at",
    "normalise",
    "parse_date",
    "parse_timestamp",
    "to_record",
]

_KNOWN: Final[dict[str, str]] = {
    name.lower(): name
    for spec in _schema.RESOURCES.values()
    for table in (spec.read, spec.post, spec.patch)
    for name in table
} | {name.lower(): name for name in _schema.ADDRESS_READ}

_DATE_FIELDS: Final = _schema.DATE_FIELDS


_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_LIMIT = 4096


def canonical_key(key: str) -> str:
    """The spec's spelling of ``key`` whatever its casing (``mailaddress`` -> ``MailAddress``)."""
    cached = _KEY_CACHE.get(key)
    if cached is not None:
        return cached
    name = _KNOWN.get(key.lower()) or key[:1].upper() + key[1:]
    # Bounded: only a hostile server could send unbounded distinct keys.
    if len(_KEY_CACHE) < _KEY_CACHE_LIMIT:
        _KEY_CACHE[key] = name
    return name


def normalise(value: Any) -> Any:
    """Recursively re-key mappings to canonical PascalCase; date fields become ``YYYY-MM-DD``."""
    if isinstance(value, dict | Mapping):
        return _normalise_mapping(value)
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def _normalise_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    # The hot path of every listing (50 keys x 100,000 rows). PascalCase bodies
    # (the spec's, and the usual case) are recognised by one C-level set test
    # and copied whole; only the nested address and date fields need work.
    if type(value) is dict and _CANONICAL.issuperset(value):
        out = dict(value)
        for name in _DATE_FIELDS.intersection(out):
            item = out[name]
            if type(item) is str and item:
                out[name] = _date_text(item)
        address = out.get("MailAddress")
        if address is not None:
            out["MailAddress"] = normalise(address)
        return out
    out = {}
    for key, item in value.items():
        name = canonical_key(key if type(key) is str else str(key))
        kind = type(item)
        if kind is str:
            if item and name in _DATE_FIELDS:
                item = _date_text(item)
        elif item is not None and kind not in _SCALARS:
            item = normalise(item)
        out[name] = item
    return out


_SCALARS: Final = frozenset({int, float, bool})
_CANONICAL: Final = frozenset(_KNOWN.values())


_TS = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<frac>\d+))?\s*(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)


def parse_timestamp(text: str) -> datetime:
    """Parse a PowerOffice ``...DateTimeOffset`` into an aware datetime.

    Accepts up to 7 (or more) fractional digits, rounded *up* to the microsecond
    (Python's resolution): a record stamped ``.1234567`` reads as ``.123457``, so
    ``lastChangedDateTimeOffsetGreaterThan`` that value (strictly greater) does
    not return the record again. Also accepts ``Z``, ``+01:00``, ``+0100``, the
    spec's ``2021-09-25 08:03:00.1234567 -00:00`` form, and no offset at all
    (read as UTC). ValueError otherwise.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return _parse_timestamp_slow(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed + _MICROSECOND if _beyond_microseconds(text) else parsed


_MICROSECOND: Final = timedelta(microseconds=1)


def _beyond_microseconds(text: str) -> bool:
    # True when the fraction has non-zero digits past the sixth (fromisoformat drops them).
    dot = text.find(".", 10)
    if dot < 0:
        return False
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    return end - dot - 1 > 6 and text[dot + 7 : end].strip("0") != ""


def _parse_timestamp_slow(text: str) -> datetime:
    """The forms ``datetime.fromisoformat`` refuses (e.g. ``.5z``)."""
    match = _TS.match(text.strip())
    if match is None:
        raise ValueError(f"not a PowerOffice timestamp: {text!r}")
    time_part = match["time"] if match["time"].count(":") == 2 else match["time"] + ":00"
    digits = match["frac"] or ""
    frac = digits[:6].ljust(6, "0")
    round_up = any(d != "0" for d in digits[6:])
    tz = match["tz"]
    if tz is None or tz.upper() == "Z":
        offset = "+00:00"
    else:
        digits = tz[1:].replace(":", "").ljust(4, "0")
        offset = f"{tz[0]}{digits[:2]}:{digits[2:]}"
    parsed = datetime.fromisoformat(f"{match['date']}T{time_part}.{frac}{offset}")
    return parsed + timedelta(microseconds=1) if round_up else parsed


def parse_date(text: str) -> date:
    """Parse a date field given as ``YYYY-MM-DD`` or with a time part (which is ignored)."""
    head = text.strip()[:10]
    try:
        return date.fromisoformat(head)
    except ValueError:
        raise ValueError(f"not a PowerOffice date: {text!r}") from None


def _date_text(text: str) -> str:
    # An unparseable date is passed through untouched: the mapping reports it per record.
    try:
        return parse_date(text).isoformat()
    except ValueError:
        return text


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return parse_timestamp(value)


def changed_at(data: Mapping[str, Any]) -> datetime | None:
    """When the record last changed: ``LastChangedDateTimeOffset``, for a customer the later
    of it and its ``MailAddress.LastChangedDateTimeOffset`` (an address edit does not move
    the customer's own timestamp). ``data`` must be normalised."""
    stamps = [_timestamp(data.get("LastChangedDateTimeOffset"))]
    address = data.get("MailAddress")
    if isinstance(address, Mapping):
        stamps.append(_timestamp(address.get("LastChangedDateTimeOffset")))
    known = [stamp.astimezone(UTC) for stamp in stamps if stamp is not None]
    return max(known) if known else None


def to_record(resource: str, raw: Mapping[str, Any]) -> RemoteRecord:
    """A RemoteRecord from one raw JSON object of ``resource`` (any key casing).

    A row that is not an object, has no scalar ``Id`` or carries an unreadable
    timestamp or date is a :class:`~tolken.errors.ServerError`: PowerOffice broke
    its contract, and the run ends with that message rather than a traceback.
    """
    if not isinstance(raw, Mapping):
        raise ServerError(f"PowerOffice sent a {resource} record that is not an object", **_BROKE)
    try:
        data = normalise(raw)
        when = changed_at(data)
    except ValueError as exc:
        raise ServerError(f"PowerOffice sent a {resource} record with {exc}", **_BROKE) from None
    record_id = data.get("Id")
    if record_id is None or isinstance(record_id, Mapping | list):
        raise ServerError(f"PowerOffice sent a {resource} record without an Id", **_BROKE)
    return RemoteRecord(
        resource=_schema.resource_spec(resource).name,
        id=str(record_id),
        data=data,
        changed_at=when,
    )


_BROKE: Final[dict[str, Any]] = {"system": "poweroffice"}
