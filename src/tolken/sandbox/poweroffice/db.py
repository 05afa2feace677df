"""SQLite state of the simulator: one table per resource plus counters.

Each row keeps the full read DTO as compact PascalCase JSON (``doc``) next to
the indexed columns the list filters and paging need (``id``,
``last_changed``, ``created``, codes, numbers, references). A plain list page
is then ``SELECT doc ... LIMIT/OFFSET`` glued into a JSON array without
parsing a single row in Python, which keeps listing 100,000 customers fast.

Timestamps are integer ticks of 100 ns (the 7 fractional digits PowerOffice
shows, reference §3.3) from a clock that never repeats or goes back, so two
edits in the same microsecond still order and a strict
``lastChangedDateTimeOffsetGreaterThan`` never loses one. The clock resumes
after the largest stored tick when a file-backed state is reopened.

All access goes through one connection guarded by a lock: the app serves
requests from a thread pool and SQLite state is small enough that
serialising it costs nothing noticeable.

One `Store` holds one PowerOffice client's data (`clients` keeps one per
client key). ``id_offset`` shifts every id sequence, so ids of different
clients never coincide and an id used with the wrong client's token is a 404.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from tolken.sandbox._sqlite import connect, write_transaction

__all__ = ["TABLES", "Clock", "Store", "format_ticks"]

TICKS_PER_SECOND = 10_000_000

#: resource path segment -> (table, indexed columns besides id/created/last_changed/doc)
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Departments": ("departments", ("code", "name", "is_active")),
    "Customers": ("customers", ("number", "ext_ref", "ext_no", "department_id")),
    "Projects": ("projects", ("code", "name", "customer_id", "department_id", "status")),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS departments (
    id INTEGER PRIMARY KEY, code TEXT, name TEXT, is_active INTEGER,
    created INTEGER NOT NULL, last_changed INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_departments_code ON departments(code);
CREATE INDEX IF NOT EXISTS ix_departments_changed ON departments(last_changed);
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY, number INTEGER, ext_ref TEXT, ext_no INTEGER,
    department_id INTEGER,
    created INTEGER NOT NULL, last_changed INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS ix_customers_number ON customers(number);
CREATE INDEX IF NOT EXISTS ix_customers_ext_ref ON customers(ext_ref);
CREATE INDEX IF NOT EXISTS ix_customers_ext_no ON customers(ext_no);
CREATE INDEX IF NOT EXISTS ix_customers_department ON customers(department_id);
CREATE INDEX IF NOT EXISTS ix_customers_changed ON customers(last_changed);
CREATE INDEX IF NOT EXISTS ix_customers_created ON customers(created);
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY, code TEXT, name TEXT, customer_id INTEGER,
    department_id INTEGER, status TEXT,
    created INTEGER NOT NULL, last_changed INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_projects_code ON projects(code);
CREATE INDEX IF NOT EXISTS ix_projects_customer ON projects(customer_id);
CREATE INDEX IF NOT EXISTS ix_projects_department ON projects(department_id);
CREATE INDEX IF NOT EXISTS ix_projects_changed ON projects(last_changed);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

#: first value handed out by each id/number sequence (realistic-looking ids)
_FIRST: dict[str, int] = {
    "department_id": 1001,
    "contact_id": 1_000_001,
    "address_id": 500_001,
    "subledger_id": 2_000_001,
    "project_id": 20_001,
}


@lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_ticks(ticks: int) -> str:
    """``2026-11-25T10:00:00.1234567+00:00`` for 100 ns ticks since the epoch."""
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    return f"{_second(seconds)}.{fraction:07d}+00:00"


class Clock:
    """Strictly increasing 100 ns ticks close to wall time."""

    def __init__(self, last: int = 0) -> None:
        self._last = last
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        """The last tick handed out."""
        return self._last

    def tick(self) -> int:
        """The next tick: now, or one more than the previous tick."""
        with self._lock:
            self._last = max(time.time_ns() // 100, self._last + 1)
            return self._last

    def ticks(self, count: int) -> range:
        """``count`` consecutive fresh ticks (for bulk inserts)."""
        with self._lock:
            start = max(time.time_ns() // 100, self._last + 1)
            self._last = start + count - 1
            return range(start, start + count)


class Store:
    """The simulator's tables in one SQLite database (a file or in memory)."""

    def __init__(self, path: Path | None, *, id_offset: int = 0) -> None:
        target = ":memory:" if path is None else str(path)
        self._conn = connect(target, _SCHEMA, wal=path is not None)
        self.id_offset = id_offset
        self.lock = threading.RLock()
        self.clock = Clock(self._max_tick())

    def _max_tick(self) -> int:
        row = self._conn.execute("SELECT value FROM counters WHERE name = 'clock'").fetchone()
        found = row[0] if row else 0
        for table, _ in TABLES.values():
            row = self._conn.execute(f"SELECT MAX(last_changed) FROM {table}").fetchone()
            found = max(found, row[0] or 0)
        return int(found)

    def save_clock(self, conn: sqlite3.Connection) -> None:
        """Persist the clock's last tick: address stamps live only inside documents,
        so the tables alone cannot tell the clock where to resume after a restart."""
        conn.execute(
            "INSERT INTO counters(name, value) VALUES ('clock', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (self.clock.last,),
        )

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Hold the lock and run one atomic write transaction."""
        return write_transaction(self._conn, self.lock)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read-only query."""
        with self.lock:
            return self._conn.execute(sql, params).fetchall()

    def next_value(self, conn: sqlite3.Connection, name: str, count: int = 1) -> int:
        """Reserve ``count`` values of the sequence ``name``; return the first."""
        row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        first = row[0] if row else _FIRST[name] + self.id_offset
        conn.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, first + count),
        )
        return int(first)

    def next_customer_number(self, conn: sqlite3.Connection) -> int:
        """The next free customer number after the largest used (from 10000)."""
        row = conn.execute("SELECT MAX(number) FROM customers").fetchone()
        return max(10000, (row[0] or 0) + 1)

    def get_doc(self, path: str, entity_id: int) -> dict[str, Any] | None:
        """The stored DTO of one record, or None."""
        table = TABLES[path][0]
        rows = self.query(f"SELECT doc FROM {table} WHERE id = ?", (entity_id,))
        return json.loads(rows[0][0]) if rows else None

    def write(
        self,
        conn: sqlite3.Connection,
        path: str,
        doc: dict[str, Any],
        columns: dict[str, Any],
        *,
        created: int,
        last_changed: int,
    ) -> None:
        """Insert or replace one record (its indexed columns from ``columns``)."""
        table, names = TABLES[path]
        values = [doc["Id"], *(columns.get(n) for n in names), created, last_changed]
        values.append(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))
        marks = ", ".join("?" * len(values))
        updates = ", ".join(
            f"{n} = excluded.{n}" for n in (*names, "created", "last_changed", "doc")
        )
        # An upsert on id only: INSERT OR REPLACE would silently delete another row
        # that clashes on a unique column (customer number) instead of failing.
        conn.execute(
            f"INSERT INTO {table} (id, {', '.join(names)}, created, last_changed, doc)"
            f" VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}",
            values,
        )

    def bulk_insert(
        self, conn: sqlite3.Connection, path: str, rows: Iterable[Sequence[Any]]
    ) -> None:
        """Insert prepared rows ``(id, *columns, created, last_changed, doc_json)``."""
        table, names = TABLES[path]
        marks = ", ".join("?" * (len(names) + 4))
        conn.executemany(
            f"INSERT INTO {table} (id, {', '.join(names)}, created, last_changed, doc)"
            f" VALUES ({marks})",
            rows,
        )

    def delete(self, conn: sqlite3.Connection, path: str, entity_id: int) -> None:
        """Remove one record."""
        conn.execute(f"DELETE FROM {TABLES[path][0]} WHERE id = ?", (entity_id,))

    def clear(self) -> None:
        """Empty every table and sequence."""
        with self.transaction() as conn:
            for table, _ in TABLES.values():
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM counters")

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self._conn.close()
