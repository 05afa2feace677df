"""Small pieces the executor is built from: action groups, the live pair state, body helpers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tolken.connectors.base import RemoteRecord
from tolken.engine.cursor import content_hash
from tolken.engine.model import (
    Action,
    Ambiguous,
    CreateInPMS,
    CreateInPowerOffice,
    Link,
    Side,
    Skipped,
    Wait,
)
from tolken.store import Shadow

__all__ = [
    "BY_HAND",
    "PairState",
    "describe",
    "group_actions",
    "jsonable",
    "link_reason",
    "park_key",
    "side_of",
    "without_empty",
]

BY_HAND = "by hand (tolken link)"
"""The ``rule`` of a link made with ``tolken link``."""


def _group_key(action: Action) -> tuple[str, ...]:
    if isinstance(action, CreateInPMS):
        return ("create", "poweroffice", action.po_id)
    if isinstance(action, CreateInPowerOffice):
        return ("create", "pms", action.pms_id)
    if isinstance(action, Ambiguous | Wait):
        return ("one", action.source, action.record_id)
    if isinstance(action, Skipped):
        return ("skip", str(action.po_id), str(action.pms_id))
    return ("pair", action.po_id, action.pms_id)


def group_actions(actions: Sequence[Action]) -> Iterator[list[Action]]:
    """Split a plan into groups: consecutive actions about the same record or pair."""
    group: list[Action] = []
    for action in actions:
        if group and (_group_key(action) != _group_key(group[0]) or isinstance(action, Link)):
            yield group
            group = []
        group.append(action)
    if group:
        yield group


@dataclass
class PairState:
    """The live state of one linked pair while its group is applied."""

    link_id: int | None
    po_id: str
    pms_id: str
    fields: dict[str, Any]
    has_shadow: bool
    po_hash: str | None = None
    po_changed_at: datetime | None = None
    pms_version: int | None = None
    pms_hash: str | None = None
    pms_changed_at: datetime | None = None
    stored: Shadow | None = None

    def see_po(self, record: RemoteRecord | None, digest: str | None = None) -> None:
        """Remember the PowerOffice record's hash and time (what tolken last saw or wrote).

        ``digest``: the record's content hash when it is known already (the listing's)."""
        if record is not None and not record.deleted:
            self.po_hash = digest if digest is not None else content_hash(record.data)
            self.po_changed_at = record.changed_at

    def see_pms(self, record: RemoteRecord | None) -> None:
        """Remember the PMS record's version, hash and time."""
        if record is not None and not record.deleted:
            self.pms_hash = content_hash(record.data)
            self.pms_changed_at = record.changed_at
            self.pms_version = record.version

    def shadow(self) -> Shadow:
        """The shadow to store: the fields and each side's last seen version and hash."""
        return Shadow(
            dict(self.fields),
            None,
            self.po_hash,
            self.po_changed_at,
            self.pms_version,
            self.pms_hash,
            self.pms_changed_at,
        )


def link_reason(rule: str) -> str:
    return "linked " + rule if rule == BY_HAND else f"merge rule {rule}"


def park_key(action: Action) -> tuple[str, str]:
    if isinstance(action, CreateInPowerOffice):
        return ("pms", action.pms_id)
    if isinstance(action, Ambiguous | Wait):
        return (action.source, action.record_id)
    if isinstance(action, Skipped):
        return (
            ("pms", str(action.pms_id)) if action.po_id is None else ("poweroffice", action.po_id)
        )
    return ("poweroffice", action.po_id)


def side_of(side: str) -> Side:
    return "pms" if side == "pms" else "poweroffice"


def without_empty(body: Mapping[str, Any]) -> dict[str, Any]:
    """A create body without empty values (nested objects with nothing in them dropped)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, Mapping):
            value = without_empty(value)
            if not value:
                continue
        if value is None or value == "":
            continue
        out[key] = value
    return out


_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Types :func:`jsonable` returns as they are (checked first: most values are these)."""


def jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Mapping):
        return {str(k): v if type(v) in _PLAIN else jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def describe(values: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(values.items()) if v is not None)
    return shown[:120]
