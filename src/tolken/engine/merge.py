"""Three-way merge of one linked pair, field by field, against the shadow.

Values are compared through :func:`comparison_key`, never raw, so two values
a user would call equal never ping-pong between the systems:

- empty is one value: ``None``, ``""``, whitespace-only strings, empty lists
  and dicts (and a field missing from a projection) all compare as empty;
- strings are compared after Unicode NFC normalisation (``ø`` composed or
  decomposed), with ``\\r\\n``/``\\r`` read as ``\\n`` and leading/trailing
  whitespace ignored (systems trim on save; an echo must not look like an
  edit). Case and inner whitespace count: they are visible edits;
- dates compare as ``YYYY-MM-DD``: a :class:`~datetime.date`, the string
  ``2024-01-05``, and a midnight date-time (``2024-01-05T00:00:00``, with
  fractional zeros, ``Z`` or any offset: PowerOffice sends dates that way) are
  equal. Other date-times compare as the instant (naive ones read as UTC);
- numbers compare by value, and an integer equals the string of its canonical
  decimal digits (``10001 == "10001"``; ``"010001"`` differs, since leading
  zeros are part of a code). ``True`` is never equal to ``1``.

Writes always carry the winning side's raw value; normalisation is only for
deciding *whether* something changed.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tolken.engine.model import ConflictPolicy, FieldConflict, MergeResult, Side, Values

__all__ = ["comparison_key", "decide_winner", "is_empty", "merge_fields", "values_equal"]

_MIDNIGHT = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_POLICIES: frozenset[str] = frozenset({"newest-wins", "poweroffice-wins", "pms-wins", "manual"})


def comparison_key(value: Any) -> Any:
    """The normalised form two values are compared by (``None`` means empty)."""
    if value is None:
        return None
    if isinstance(value, bool):
        # bool is an int subclass: keep True apart from 1 and "1".
        return ("bool", value)
    if isinstance(value, str):
        return _string_key(value)
    if isinstance(value, datetime):
        return _datetime_key(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal):
        return _number_key(value)
    if isinstance(value, Mapping):
        items = tuple(sorted((str(k), comparison_key(v)) for k, v in value.items()))
        return items if any(v is not None for _, v in items) else None
    if isinstance(value, list | tuple | set | frozenset):
        keys = tuple(comparison_key(v) for v in value)
        if isinstance(value, set | frozenset):
            keys = tuple(sorted(keys, key=repr))
        return keys or None
    return value


def is_empty(value: Any) -> bool:
    """True for the values that count as "no value" (None, blank strings, empty containers)."""
    return comparison_key(value) is None


def values_equal(a: Any, b: Any) -> bool:
    """True when a user would see ``a`` and ``b`` as the same value."""
    return bool(comparison_key(a) == comparison_key(b))


def _string_key(value: str) -> str | None:
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return None
    midnight = _MIDNIGHT.match(text)
    if midnight:
        return midnight.group(1)
    if _DATETIME.match(text):
        try:
            return _datetime_key(datetime.fromisoformat(text))
        except ValueError:
            return text
    return text


def _datetime_key(value: datetime) -> str:
    if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
        # A date field sent as local midnight: the date as written is what the user sees.
        return value.date().isoformat()
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _number_key(value: int | float | Decimal) -> str:
    if isinstance(value, float | Decimal):
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, Decimal) and not value.is_finite():
            return str(value).lower()
        if isinstance(value, float) and math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == int(value):
            return str(int(value))
        return repr(float(value))
    return str(value)


def decide_winner(
    policy: ConflictPolicy,
    po_changed_at: datetime | None,
    pms_changed_at: datetime | None,
) -> Side | None:
    """Which side wins a conflict under ``policy``; None means parked (``manual``).

    ``newest-wins`` compares the modification times (naive times read as UTC);
    an exact tie goes to PowerOffice, the system of record, and a side whose
    time is unknown never beats a side whose time is known.
    """
    if policy not in _POLICIES:
        raise ValueError(f"unknown conflict policy {policy!r}")
    if policy == "manual":
        return None
    if policy == "poweroffice-wins":
        return "poweroffice"
    if policy == "pms-wins":
        return "pms"
    if pms_changed_at is None:
        return "poweroffice"
    if po_changed_at is None:
        return "pms"
    return "pms" if _utc(pms_changed_at) > _utc(po_changed_at) else "poweroffice"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def merge_fields(
    shadow: Values | None,
    po: Values,
    pms: Values,
    *,
    policy: ConflictPolicy = "newest-wins",
    po_changed_at: datetime | None = None,
    pms_changed_at: datetime | None = None,
) -> MergeResult:
    """Merge one linked pair: what to write where, the new shadow and the conflicts.

    Per field of ``po`` ∪ ``pms`` (a field missing on one side is empty there):

    - with a shadow entry: a side that differs from it changed. One side
      changed → the change goes to the other side; both changed alike → only
      the shadow moves; both changed differently → a conflict for ``policy``;
    - without one (first link, or a field new to the mapping): equal values
      settle the shadow; an empty value never overwrites a non-empty one (the
      non-empty value is copied over); two different non-empty values are a
      conflict for ``policy``.

    A conflict's loser is overwritten by the winner's value and both values are
    reported; under ``manual`` neither side is written and the shadow keeps its
    old entry, so the conflict stays open until a person settles it.
    """
    old_shadow: Mapping[str, Any] = shadow if shadow is not None else {}
    new_shadow: dict[str, Any] = dict(old_shadow)
    to_po: dict[str, Any] = {}
    to_pms: dict[str, Any] = {}
    settled: dict[str, Any] = {}
    conflicts: list[FieldConflict] = []
    winner = decide_winner(policy, po_changed_at, pms_changed_at)

    for name in sorted(set(po) | set(pms)):
        p, m = po.get(name), pms.get(name)
        kp, km = comparison_key(p), comparison_key(m)
        known = name in old_shadow
        if known:
            ks = comparison_key(old_shadow[name])
            po_changed, pms_changed = kp != ks, km != ks
            if not po_changed and not pms_changed:
                continue
            if po_changed and not pms_changed:
                to_pms[name] = new_shadow[name] = p
                continue
            if pms_changed and not po_changed:
                to_po[name] = new_shadow[name] = m
                continue
        if kp == km:
            new_shadow[name] = p
            if not known or old_shadow[name] != p:
                settled[name] = p
            continue
        if not known and kp is None:
            to_po[name] = new_shadow[name] = m
            continue
        if not known and km is None:
            to_pms[name] = new_shadow[name] = p
            continue
        conflicts.append(
            FieldConflict(
                field=name,
                poweroffice=p,
                pms=m,
                shadow=old_shadow.get(name),
                winner=winner,
                policy=policy,
                shadow_known=known,
            )
        )
        if winner == "poweroffice":
            to_pms[name] = new_shadow[name] = p
        elif winner == "pms":
            to_po[name] = new_shadow[name] = m

    return MergeResult(
        to_poweroffice=to_po,
        to_pms=to_pms,
        shadow=new_shadow,
        settled=settled,
        conflicts=tuple(conflicts),
    )
