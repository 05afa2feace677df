"""The store's batch insert: the same stored values as SQLAlchemy's own INSERT, fewer steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Table, insert, select, text

from tolken.store import open_store
from tolken.store._base import insert_many
from tolken.store._models import HistoryRow, LinkRow, ShadowRow


def _rows(link_ids: list[int], now: datetime) -> dict[Table, list[dict[str, Any]]]:
    later = now + timedelta(seconds=1, microseconds=7)
    shadows = [
        {
            "link_id": link_id,
            "fields": {"name": f"n{i}", "address.city": None, "active": i % 2 == 0},
            "poweroffice_version": None,
            "poweroffice_hash": "a" * 64,
            "poweroffice_changed_at": later if i % 2 else None,
            "pms_version": i,
            "pms_hash": None,
            "pms_changed_at": later,  # the same object in every row, converted once
            "updated_at": now,
        }
        for i, link_id in enumerate(link_ids)
    ]
    history = [
        {
            "link_id": link_id,
            "direction": "to_pms",
            "action": "create",
            "fields": {} if i == 0 else {"name": f"n{i}", "progress": 0.5},
            "reason": "new PowerOffice record",
            "run_id": None,
            "at": now.astimezone(timezone(timedelta(hours=2))),  # not UTC: stored as UTC
        }
        for i, link_id in enumerate(link_ids)
    ]
    return {ShadowRow.__table__: shadows, HistoryRow.__table__: history}  # type: ignore[dict-item]


def _stored(conn: Any, table: Table) -> list[tuple[Any, ...]]:
    """Every row as SQLite holds it (text, not converted back)."""
    return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table.name} ORDER BY 1, 2"))]


def test_insert_many_stores_what_sqlalchemy_stores(tmp_path: Any) -> None:
    """JSON (a None field too), times (one shared, one not UTC, some NULL) and plain values end
    up in SQLite exactly as ``conn.execute(insert(table), rows)`` leaves them."""
    now = datetime(2026, 12, 7, 20, 0, 0, 123456, tzinfo=UTC)
    stored: list[dict[str, list[tuple[Any, ...]]]] = []
    for way in ("sqlalchemy", "insert_many"):
        with open_store(f"sqlite:///{tmp_path / way}.db") as store, store.engine.begin() as conn:
            links = [
                {
                    "tenant": "t1",
                    "flow": "customers",
                    "pms_resource": "customers",
                    "poweroffice_id": str(n),
                    "pms_id": f"c-{n}",
                    "state": "active",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(4)
            ]
            link_table: Table = LinkRow.__table__  # type: ignore[assignment]
            if way == "sqlalchemy":
                conn.execute(insert(link_table), links)
            else:
                insert_many(conn, link_table, links)
            ids = list(conn.execute(select(LinkRow.id).order_by(LinkRow.id)).scalars())
            for table, rows in _rows(ids, now).items():
                if way == "sqlalchemy":
                    conn.execute(insert(table), rows)
                else:
                    insert_many(conn, table, rows)
            stored.append({t.name: _stored(conn, t) for t in (link_table, *_rows(ids, now))})
    assert stored[0] == stored[1]
    assert stored[1]["shadows"][0][1] is not None  # JSON text, not SQL NULL
