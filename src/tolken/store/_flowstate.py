"""The links and shadows of one flow, read from the store a page of ids at a time.

A :class:`FlowState` holds only the rows it was asked about: a cycle asks for
the ids of the page of records in hand (:meth:`FlowState.prefetch`, one query
keyed by those ids), so its memory follows the records a cycle touches, not the
links the flow has. Questions about every link (:meth:`FlowState.pairs`, a
reconcile's delete check) stream from the store without keeping the rows.

Rows are kept as the database returned them and turned into :class:`Link` and
:class:`Shadow` values only when asked for: comparing content hashes
(:meth:`FlowState.hashes`) and translating ids touch neither JSON nor timestamps.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast, runtime_checkable

from tolken.store._records import FlowId, Link, LinkState, Shadow

__all__ = ["FlowRows", "FlowState", "compact_row", "to_utc"]

# Positions in a raw row: the link's columns, then the shadow's.
_ID, _PO, _PMS, _STATE = 0, 3, 4, 5
_FIELDS = 8
_PO_HASH, _PMS_HASH = 10, 13
_TIMES = (6, 7)

Key = Literal["id", "po", "pms"]
"""Which column a lookup is keyed by: the link id, the PowerOffice id or the PMS id."""


def to_utc(value: Any) -> datetime | None:
    """A timestamp as a driver returned it without type processing, as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite stores naive UTC text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise TypeError(f"not a timestamp: {value!r}")


def compact_row(row: Sequence[Any]) -> tuple[Any, ...]:
    """A raw row as a plain tuple, its tenant, flow and state shared with every other row.

    The driver gives each row its own copy of these strings and a row object
    around the values: about 230 bytes a link.
    """
    intern = sys.intern
    return (row[0], intern(row[1]), intern(row[2]), row[3], row[4], intern(row[5]), *row[6:])


@runtime_checkable
class FlowRows(Protocol):
    """Where a :class:`FlowState` reads its rows (the store, or rows given in memory)."""

    def rows(self, key: Key, ids: Collection[Any]) -> list[tuple[Any, ...]]:
        """The raw rows (link columns, then shadow columns) whose ``key`` is in ``ids``."""

    def count(self) -> int:
        """How many links the flow has."""

    def exists(self) -> bool:
        """Whether the flow has a link at all (one row looked at, not all counted)."""

    def pairs(self) -> Iterator[tuple[str, str, str]]:
        """``(poweroffice_id, pms_id, state)`` of every link, streamed."""


class _InMemory:
    """Rows given up front (tests, and a caller that has them already)."""

    def __init__(self, rows: Iterable[Sequence[Any]]) -> None:
        self._rows = [tuple(row) for row in rows]

    def rows(self, key: Key, ids: Collection[Any]) -> list[tuple[Any, ...]]:
        column = {"id": _ID, "po": _PO, "pms": _PMS}[key]
        wanted = set(ids)
        return [row for row in self._rows if row[column] in wanted]

    def count(self) -> int:
        return len(self._rows)

    def exists(self) -> bool:
        return bool(self._rows)

    def pairs(self) -> Iterator[tuple[str, str, str]]:
        for row in self._rows:
            yield row[_PO], row[_PMS], row[_STATE]


class FlowState:
    """One tenant's flow: its links with their shadows, looked up by id.

    Built on rows (a :class:`FlowRows`, or a sequence of raw rows). Nothing is
    read until asked; what was read is kept for the rest of the cycle (a
    lookup answered once, found or not, is not asked again) until
    :meth:`forget`. Lookups of an id not prefetched cost one query each.
    """

    __slots__ = ("_by_pms", "_by_po", "_links", "_rows", "_shadows", "_source", "flow", "tenant")

    def __init__(self, tenant: str, flow: FlowId, rows: FlowRows | Iterable[Sequence[Any]]) -> None:
        self.tenant = tenant
        self.flow = flow
        self._source: FlowRows = rows if isinstance(rows, FlowRows) else _InMemory(rows)
        self._rows: dict[int, tuple[Any, ...]] = {}
        self._by_po: dict[str, int | None] = {}
        self._by_pms: dict[str, int | None] = {}
        self._links: dict[int, Link] = {}
        self._shadows: dict[int, Shadow] = {}

    # -- reading ------------------------------------------------------------

    def _keep(self, rows: Iterable[tuple[Any, ...]]) -> None:
        for row in rows:
            link_id = row[_ID]
            self._rows[link_id] = row
            self._by_po[row[_PO]] = link_id
            self._by_pms[row[_PMS]] = link_id

    def prefetch(
        self,
        *,
        poweroffice_ids: Iterable[str] = (),
        pms_ids: Iterable[str] = (),
        link_ids: Iterable[int] = (),
    ) -> None:
        """Read the links of these ids not asked about yet, one query per key (and 500 ids)."""
        for key, ids, known in (
            ("po", poweroffice_ids, self._by_po),
            ("pms", pms_ids, self._by_pms),
        ):
            missing = [i for i in dict.fromkeys(ids) if i not in known]
            if missing:
                self._keep(self._source.rows(cast(Key, key), missing))
                for record_id in missing:
                    known.setdefault(record_id, None)
        wanted = [i for i in dict.fromkeys(link_ids) if i not in self._rows]
        if wanted:
            self._keep(self._source.rows("id", wanted))

    def forget(self) -> None:
        """Drop every row read so far (a page is done; the next one asks afresh)."""
        self._rows.clear()
        self._by_po.clear()
        self._by_pms.clear()
        self._links.clear()
        self._shadows.clear()

    def _row(self, link_id: int) -> tuple[Any, ...] | None:
        if link_id not in self._rows:
            self.prefetch(link_ids=[link_id])
        return self._rows.get(link_id)

    def _po_link_id(self, poweroffice_id: str) -> int | None:
        if poweroffice_id not in self._by_po:
            self.prefetch(poweroffice_ids=[poweroffice_id])
        return self._by_po.get(poweroffice_id)

    def _pms_link_id(self, pms_id: str) -> int | None:
        if pms_id not in self._by_pms:
            self.prefetch(pms_ids=[pms_id])
        return self._by_pms.get(pms_id)

    # -- questions about every link (streamed, nothing kept) ------------------

    def __len__(self) -> int:
        return self._source.count()

    def has_links(self) -> bool:
        """Whether the flow has any link (a first sync has none); cheaper than ``len``."""
        return self._source.exists()

    def pairs(self) -> Iterator[tuple[str, str, LinkState]]:
        """``(poweroffice_id, pms_id, state)`` of every link, streamed from the store."""
        for po_id, pms_id, state in self._source.pairs():
            yield str(po_id), str(pms_id), cast(LinkState, state)

    def poweroffice_ids(self) -> set[str]:
        """Every linked PowerOffice id."""
        return {po_id for po_id, _, _ in self._source.pairs()}

    def pms_ids(self) -> set[str]:
        """Every linked PMS id."""
        return {pms_id for _, pms_id, _ in self._source.pairs()}

    def linked_poweroffice(self, poweroffice_ids: Collection[str]) -> set[str]:
        """Which of these PowerOffice ids are linked (one query per 500, nothing kept)."""
        return {str(row[_PO]) for row in self._source.rows("po", poweroffice_ids)}

    def linked_pms(self, pms_ids: Collection[str]) -> set[str]:
        """Which of these PMS ids are linked (one query per 500, nothing kept)."""
        return {str(row[_PMS]) for row in self._source.rows("pms", pms_ids)}

    def poweroffice_hashes(self, poweroffice_ids: Collection[str]) -> dict[str, str]:
        """The shadows' PowerOffice hashes of these linked records (unlinked or no shadow: left
        out), read in one query per 500 ids and not kept: a full listing asks this per page."""
        return {
            str(row[_PO]): row[_PO_HASH]
            for row in self._source.rows("po", poweroffice_ids)
            if row[_FIELDS] is not None and row[_PO_HASH] is not None
        }

    # -- one link -------------------------------------------------------------

    def __contains__(self, link_id: object) -> bool:
        return isinstance(link_id, int) and self._row(link_id) is not None

    def get(self, link_id: int) -> Link | None:
        """The link with this id, if it belongs to this flow."""
        link = self._links.get(link_id)
        if link is None:
            row = self._row(link_id)
            if row is None:
                return None
            created, updated = (to_utc(row[i]) for i in _TIMES)
            link = self._links[link_id] = Link._make((*row[:6], created, updated))
        return link

    def by_po(self, poweroffice_id: str) -> Link | None:
        """The link of a PowerOffice record, or ``None``."""
        link_id = self._po_link_id(poweroffice_id)
        return None if link_id is None else self.get(link_id)

    def by_pms(self, pms_id: str) -> Link | None:
        """The link of a PMS record, or ``None``."""
        link_id = self._pms_link_id(pms_id)
        return None if link_id is None else self.get(link_id)

    def pms_id_for(self, poweroffice_id: str) -> str | None:
        """Translate a PowerOffice id to the linked PMS id (references between flows)."""
        link_id = self._po_link_id(poweroffice_id)
        return None if link_id is None else str(self._rows[link_id][_PMS])

    def poweroffice_id_for(self, pms_id: str) -> str | None:
        """Translate a PMS id to the linked PowerOffice id."""
        link_id = self._pms_link_id(pms_id)
        return None if link_id is None else str(self._rows[link_id][_PO])

    def state_of(self, link_id: int) -> str | None:
        """The link's state (``active``, ``source-deleted``, ``pms-deleted``)."""
        row = self._row(link_id)
        return None if row is None else str(row[_STATE])

    def poweroffice_hash(self, poweroffice_id: str) -> str | None:
        """The shadow's PowerOffice hash of a linked record (``None``: unlinked or no shadow)."""
        link_id = self._po_link_id(poweroffice_id)
        if link_id is None:
            return None
        row = self._rows[link_id]
        return None if row[_FIELDS] is None else row[_PO_HASH]

    def hashes(self, link_id: int) -> tuple[str | None, str | None]:
        """``(poweroffice_hash, pms_hash)`` of the shadow, without decoding its fields."""
        row = self._row(link_id)
        if row is None or row[_FIELDS] is None:
            return (None, None)
        return (row[_PO_HASH], row[_PMS_HASH])

    def shadow(self, link_id: int) -> Shadow | None:
        """The shadow of a link, or ``None`` when nothing was synchronised yet."""
        shadow = self._shadows.get(link_id)
        if shadow is None:
            row = self._row(link_id)
            if row is None or row[_FIELDS] is None:
                return None
            shadow = self._shadows[link_id] = decode_shadow(row[_FIELDS:])
        return shadow


def decode_shadow(raw: Sequence[Any]) -> Shadow:
    """A shadow from ``(fields_json, po_version, po_hash, po_changed_at, pms_...)``."""
    fields = raw[0]
    return Shadow(
        json.loads(fields) if isinstance(fields, str) else dict(fields),
        raw[1],
        raw[2],
        to_utc(raw[3]),
        raw[4],
        raw[5],
        to_utc(raw[6]),
    )
