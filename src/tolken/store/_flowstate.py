"""All links and shadows of one flow, for a reconcile over 100,000 records.

Loading is the hot path of a reconcile, so rows are kept as the database
returned them and turned into :class:`Link` and :class:`Shadow` values only when
asked for: comparing content hashes (:meth:`FlowState.hashes`) and translating
ids touch neither JSON nor timestamps.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator, KeysView, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from tolken.store._records import FlowId, Link, LinkState, Shadow

__all__ = ["FlowState", "compact_row", "to_utc"]

# Positions in a raw row: the link's columns, then the shadow's.
_ID, _PO, _PMS, _STATE = 0, 3, 4, 5
_FIELDS = 8
_PO_HASH, _PMS_HASH = 10, 13
_TIMES = (6, 7)


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
    around the values: about 230 bytes a link, 23 MB of a 100,000-link state.
    """
    intern = sys.intern
    return (row[0], intern(row[1]), intern(row[2]), row[3], row[4], intern(row[5]), *row[6:])


class _Index:
    __slots__ = ("by_pms", "by_po", "rows")

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
        self.rows: dict[int, Sequence[Any]] = {row[_ID]: row for row in rows}
        self.by_po: dict[str, int] = {row[_PO]: row[_ID] for row in rows}
        self.by_pms: dict[str, int] = {row[_PMS]: row[_ID] for row in rows}


class FlowState:
    """Every link of one tenant's flow with its shadow.

    Built from rows, or from a ``loader`` that runs once, on first use: an idle
    cycle that looks nothing up never pays for loading 100,000 links.
    """

    __slots__ = ("_index", "_links", "_loader", "_lock", "_shadows", "flow", "tenant")

    def __init__(
        self,
        tenant: str,
        flow: FlowId,
        rows: Sequence[Sequence[Any]] | None = None,
        *,
        loader: Callable[[], Sequence[Sequence[Any]]] | None = None,
    ) -> None:
        if (rows is None) == (loader is None):
            raise ValueError("give either rows or a loader")
        self.tenant = tenant
        self.flow = flow
        self._index = _Index(rows) if rows is not None else None
        self._loader = loader
        self._lock = threading.Lock()
        self._links: dict[int, Link] = {}
        self._shadows: dict[int, Shadow] = {}

    @property
    def loaded(self) -> bool:
        """Whether the rows have been read from the store yet."""
        return self._index is not None

    def _ix(self) -> _Index:
        index = self._index
        if index is None:
            with self._lock:
                if self._index is None:
                    assert self._loader is not None
                    self._index = _Index(self._loader())
                    self._loader = None
                index = self._index
        return index

    def __len__(self) -> int:
        return len(self._ix().rows)

    def __iter__(self) -> Iterator[Link]:
        """Every link, in no particular order."""
        for link_id in self._ix().rows:
            link = self.get(link_id)
            if link is not None:
                yield link

    def __contains__(self, link_id: object) -> bool:
        return link_id in self._ix().rows

    def get(self, link_id: int) -> Link | None:
        """The link with this id, if it belongs to this flow."""
        link = self._links.get(link_id)
        if link is None:
            row = self._ix().rows.get(link_id)
            if row is None:
                return None
            created, updated = (to_utc(row[i]) for i in _TIMES)
            link = self._links[link_id] = Link._make((*row[:6], created, updated))
        return link

    def by_po(self, poweroffice_id: str) -> Link | None:
        """The link of a PowerOffice record, or ``None``."""
        link_id = self._ix().by_po.get(poweroffice_id)
        return None if link_id is None else self.get(link_id)

    def by_pms(self, pms_id: str) -> Link | None:
        """The link of a PMS record, or ``None``."""
        link_id = self._ix().by_pms.get(pms_id)
        return None if link_id is None else self.get(link_id)

    def poweroffice_ids(self) -> KeysView[str]:
        """Linked PowerOffice ids (a reconcile finds the ones gone from a full listing)."""
        return self._ix().by_po.keys()

    def pms_ids(self) -> KeysView[str]:
        """Linked PMS ids."""
        return self._ix().by_pms.keys()

    def pms_id_for(self, poweroffice_id: str) -> str | None:
        """Translate a PowerOffice id to the linked PMS id (references between flows)."""
        ix = self._ix()
        link_id = ix.by_po.get(poweroffice_id)
        return None if link_id is None else str(ix.rows[link_id][_PMS])

    def poweroffice_id_for(self, pms_id: str) -> str | None:
        """Translate a PMS id to the linked PowerOffice id."""
        ix = self._ix()
        link_id = ix.by_pms.get(pms_id)
        return None if link_id is None else str(ix.rows[link_id][_PO])

    def state_of(self, link_id: int) -> str | None:
        """The link's state (``active``, ``source-deleted``, ``pms-deleted``)."""
        row = self._ix().rows.get(link_id)
        return None if row is None else str(row[_STATE])

    def pairs(self) -> Iterator[tuple[str, str, LinkState]]:
        """``(poweroffice_id, pms_id, state)`` of every link, without building :class:`Link`\\ s."""
        for row in self._ix().rows.values():
            yield str(row[_PO]), str(row[_PMS]), cast(LinkState, row[_STATE])

    def poweroffice_hash(self, poweroffice_id: str) -> str | None:
        """The shadow's PowerOffice hash of a linked record (``None``: unlinked or no shadow).

        The same as :meth:`by_po` then :meth:`hashes`, without building the link:
        a full listing asks this for every record.
        """
        ix = self._ix()
        link_id = ix.by_po.get(poweroffice_id)
        if link_id is None:
            return None
        row = ix.rows[link_id]
        return None if row[_FIELDS] is None else row[_PO_HASH]

    def hashes(self, link_id: int) -> tuple[str | None, str | None]:
        """``(poweroffice_hash, pms_hash)`` of the shadow, without decoding its fields."""
        row = self._ix().rows.get(link_id)
        if row is None or row[_FIELDS] is None:
            return (None, None)
        return (row[_PO_HASH], row[_PMS_HASH])

    def shadow(self, link_id: int) -> Shadow | None:
        """The shadow of a link, or ``None`` when nothing was synchronised yet."""
        shadow = self._shadows.get(link_id)
        if shadow is None:
            row = self._ix().rows.get(link_id)
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
