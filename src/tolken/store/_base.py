"""Connections and transactions shared by the store's repositories."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, FromClause, Table, insert
from sqlalchemy.exc import OperationalError

from tolken.errors import Retriable, TolkenError, Unreachable
from tolken.store._db import READ_ONLY

__all__ = ["Clock", "StoreBase", "TenantBound", "chunked", "insert_many", "utcnow"]

Clock = Callable[[], datetime]

T = TypeVar("T")

# Well below SQLite's bound-parameter limit and PostgreSQL's, for IN (...) lists.
CHUNK = 500


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def chunked(items: Iterable[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Split ``items`` into lists of at most ``size``."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def insert_many(
    conn: Connection, model_table: FromClause, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``INSERT`` many rows (each with the same keys) in one ``executemany``.

    What ``conn.execute(insert(table), rows)`` does, with each column's own
    bind processor (the same conversions: UTC times, JSON), but on SQLite
    straight to the driver: SQLAlchemy's per-row parameter processing cost more
    than SQLite's own work for a batch of new links, and the batch's timestamps
    (one value for every row) are converted once instead of once a row.
    """
    if not rows:
        return
    table = cast(Table, model_table)  # an ORM model's ``__table__``: always a Table
    dialect = conn.dialect
    names = list(rows[0])
    if dialect.name != "sqlite" or any(
        c.default is not None for c in table.c if c.name not in names
    ):  # a Python-side default for a column not given is SQLAlchemy's to fill in
        conn.execute(insert(table), list(rows))
        return
    columns = [table.c[name] for name in names]
    converted = [
        (i, process)
        for i, column in enumerate(columns)
        if (process := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    pick = itemgetter(*names)
    params: list[tuple[Any, ...]] = []
    last: dict[int, tuple[Any, Any]] = {}
    for row in rows:
        values = list(pick(row)) if len(names) > 1 else [row[names[0]]]
        for i, process in converted:
            raw = values[i]
            seen = last.get(i)
            if seen is not None and seen[0] is raw:
                values[i] = seen[1]  # the same object as the row before (the batch's time)
            else:
                values[i] = process(raw)
                last[i] = (raw, values[i])
        params.append(tuple(values))
    sql = (
        f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    conn.exec_driver_sql(sql, params)


class StoreBase:
    """Owns the engine and the current transaction of each thread.

    Every public method runs in its own short transaction, unless the caller
    opened one with :meth:`transaction`; then it joins it, so the engine can
    commit a record's link, shadow and history together or not at all.
    """

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock
        self._local = threading.local()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for diagnostics and tests)."""
        return self._engine

    @property
    def _single_connection(self) -> bool:
        # In-memory SQLite shares one connection: no second connection to read on.
        url = self._engine.url
        return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Release every connection."""
        self._engine.dispose()

    def now(self) -> datetime:
        """The store's clock (injectable for tests)."""
        return self._clock()

    @property
    def in_transaction(self) -> bool:
        """True inside ``with store.transaction():`` on this thread."""
        return self._current() is not None

    def _current(self) -> Connection | None:
        conn: Connection | None = getattr(self._local, "conn", None)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the enclosed store calls atomically; nested use makes a savepoint.

        Leaving the block normally commits; an exception rolls everything back
        and propagates.
        """
        current = self._current()
        if current is not None:
            with current.begin_nested():
                yield
            return
        with self._connect(read_only=False) as conn, conn.begin():
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        current = self._current()
        if current is not None:
            yield current
            return
        with self._connect(read_only=False) as conn, conn.begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        current = self._current()
        if current is not None:
            yield current
            return
        with self._connect(read_only=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def _connect(self, *, read_only: bool) -> Iterator[Connection]:
        try:
            conn = self._engine.connect()
        except OperationalError as exc:
            raise Unreachable(f"cannot open the store: {exc.orig or exc}", system="store") from None
        try:
            conn.execution_options(**{READ_ONLY: read_only})
            yield conn
        except OperationalError as exc:
            raise _classify(exc) from None
        finally:
            conn.close()


class TenantBound:
    """A view of the store bound to one tenant: the base of the tenant-keyed repositories.

    Its methods take no tenant: every query it makes carries ``self.tenant``, and
    a row of another tenant, looked up by id, is not found. It shares the
    store's connections and transactions.
    """

    def __init__(self, store: StoreBase, tenant: str) -> None:
        if not tenant:
            raise ValueError("a tenant id is required")
        self._store = store
        self.tenant = tenant

    def now(self) -> datetime:
        """The store's clock (injectable for tests)."""
        return self._store.now()

    def transaction(self) -> AbstractContextManager[None]:
        """Run the enclosed store calls atomically (see :meth:`StoreBase.transaction`)."""
        return self._store.transaction()

    @property
    def in_transaction(self) -> bool:
        """True inside ``with store.transaction():`` on this thread."""
        return self._store.in_transaction

    # The view borrows its store's connections (one StoreBase, so the same transaction);
    # these are the store's own private helpers, shared with its views only.
    @property
    def _single_connection(self) -> bool:
        return self._store._single_connection  # noqa: SLF001 - the store's view

    def _write(self) -> AbstractContextManager[Connection]:
        return self._store._write()  # noqa: SLF001 - the store's view

    def _read(self) -> AbstractContextManager[Connection]:
        return self._store._read()  # noqa: SLF001 - the store's view

    def _connect(self, *, read_only: bool) -> AbstractContextManager[Connection]:
        return self._store._connect(read_only=read_only)  # noqa: SLF001 - the store's view


def _classify(exc: OperationalError) -> TolkenError:
    """A database failure, as the engine should treat it."""
    detail = str(exc.orig or exc).strip()
    if "locked" in detail or "busy" in detail:
        # SQLite waited out its busy timeout: another writer held the file too long.
        return Retriable(f"the store is busy: {detail}", system="store")
    return Unreachable(f"lost the store: {detail}", system="store")
