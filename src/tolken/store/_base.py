"""Connections and transactions shared by the store's repositories."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, ColumnElement, Connection, Dialect, Engine, FromClause, Table, insert
from sqlalchemy.exc import OperationalError

from tolken.errors import Retriable, TolkenError, Unreachable
from tolken.store._db import READ_ONLY
from tolken.store._models import UTCDateTime, aware_utc

__all__ = [
    "Clock",
    "StoreBase",
    "TenantBound",
    "bind_rows",
    "bind_values",
    "chunked",
    "insert_bound",
    "insert_many",
    "insert_values",
    "utcnow",
    "values_per_statement",
]

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
    names = tuple(rows[0])
    if conn.dialect.name != "sqlite" or _python_defaults(table, names):
        conn.execute(insert(table), list(rows))
        return
    insert_bound(conn, table, names, bind_rows(conn, table, names, rows))


def insert_bound(
    conn: Connection, model_table: FromClause, names: Sequence[str], params: Sequence[Sequence[Any]]
) -> None:
    """``INSERT`` rows of :func:`bind_rows` parameters on SQLite in one ``executemany``."""
    if params:
        sql = _insert_sql(cast(Table, model_table), tuple(names), 1)
        conn.exec_driver_sql(sql, list(map(tuple, params)))  # SQLAlchemy takes tuples, not lists


def _python_defaults(table: Table, names: Sequence[str]) -> bool:
    """Whether a column not given has a Python-side default (SQLAlchemy's to fill in)."""
    return any(c.default is not None for c in table.c if c.name not in names)


def bind_rows(
    conn: Connection, table: Table, names: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> list[list[Any]]:
    """The driver's parameters of ``rows`` (each with the keys ``names``): :func:`bind_values`."""
    if len(names) == 1:
        return bind_values(conn, table, names, ([row[names[0]]] for row in rows))
    return bind_values(conn, table, names, map(itemgetter(*names), rows))


def bind_values(
    conn: Connection, table: Table, names: Sequence[str], rows: Iterable[Sequence[Any]]
) -> list[list[Any]]:
    """The driver's parameters of ``rows`` (the values of ``names`` in order), each value
    through its column's bind processor (as SQLAlchemy converts them), a value the row
    before had converted once.

    Lists, so a caller can fill in a value known only later (a new link's id). Raises
    what a processor raises (a naive time, a value JSON cannot hold) before any row is written.
    """
    converted = _processors(conn.dialect, table, tuple(names))
    params: list[list[Any]] = []
    last: dict[int, tuple[Any, Any]] = {}
    for row in rows:
        values = list(row)
        for i, process in converted:
            raw = values[i]
            seen = last.get(i)
            if seen is not None and seen[0] is raw:
                values[i] = seen[1]  # the same object as the row before (the batch's time)
            else:
                values[i] = process(raw)
                last[i] = (raw, values[i])
        params.append(values)
    return params


def insert_values(
    conn: Connection,
    model_table: FromClause,
    names: Sequence[str],
    params: Sequence[Sequence[Any]],
    returning: tuple[str, ...] = (),
) -> list[tuple[Any, ...]]:
    """``INSERT`` rows of :func:`bind_rows` parameters with one multi-row statement per
    :func:`values_per_statement` rows (the columns of ``returning`` of the rows made).

    One statement is all or nothing: when a row breaks a constraint, SQLite undoes the
    statement's other rows and the caller's transaction goes on, without a savepoint
    (PostgreSQL aborts the transaction: a caller that goes on needs one). Where
    SQLAlchemy would send a statement a row (an ``executemany`` without ``RETURNING``,
    which psycopg pipelines), this is one.
    """
    table = cast(Table, model_table)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    made: list[tuple[Any, ...]] = []
    step = values_per_statement(len(names))
    for start in range(0, len(params), step):
        part = params[start : start + step]
        flat = tuple(value for row in part for value in row)
        sql = _insert_sql(table, tuple(names), len(part), returning, mark)
        result = conn.exec_driver_sql(sql, flat)
        if returning:
            made.extend(result.tuples())
    return made


def values_per_statement(columns: int) -> int:
    """How many rows one :func:`insert_values` statement takes: at most :data:`CHUNK`, and
    within SQLite's 32,766 bound parameters (the limit since 3.32; ``RETURNING``, which
    the store's fast paths use, needs 3.35; PostgreSQL takes 65,535)."""
    return max(1, min(CHUNK, _SQLITE_PARAMETERS // columns))


_SQLITE_PARAMETERS = 32_766


@lru_cache(maxsize=64)
def _insert_sql(
    table: Table,
    names: tuple[str, ...],
    rows: int,
    returning: tuple[str, ...] = (),
    mark: str = "?",
) -> str:
    """The text of an ``INSERT`` of ``rows`` rows (few shapes, so kept)."""
    one = f"({', '.join([mark] * len(names))})"
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES {', '.join([one] * rows)}"
    return f"{sql} RETURNING {', '.join(returning)}" if returning else sql


@lru_cache(maxsize=64)
def _processors(
    dialect: Dialect, table: Table, names: tuple[str, ...]
) -> list[tuple[int, Callable[[Any], Any]]]:
    """The bind processors of the columns ``names`` by position (those with one)."""
    return [
        (i, process)
        for i, name in enumerate(names)
        if (process := _bind_processor(dialect, table.c[name])) is not None
    ]


def _bind_processor(dialect: Dialect, column: ColumnElement[Any]) -> Callable[[Any], Any] | None:
    """The column's bind processor on ``dialect``; a faster one of the same result for the
    store's own UTC timestamps and JSON on SQLite (the two a batch of new links converts
    most), SQLAlchemy's otherwise."""
    kind = column.type
    if dialect.name == "sqlite":
        if isinstance(kind, UTCDateTime):
            return _sqlite_utc_text
        if type(kind) is JSON and getattr(dialect, "_json_serializer", None) is None:
            fallback = kind.dialect_impl(dialect).bind_processor(dialect)
            if fallback is not None:  # always, for JSON
                return _sqlite_json(fallback)
    process: Callable[[Any], Any] | None = kind.dialect_impl(dialect).bind_processor(dialect)
    return process


def _sqlite_utc_text(value: datetime | None) -> str | None:
    """What :class:`UTCDateTime` and SQLAlchemy's SQLite ``DATETIME`` store for ``value``."""
    if value is None:
        return None
    return aware_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


_json_text = json.JSONEncoder().encode  # what ``json.dumps(value)`` uses


def _sqlite_json(fallback: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """What SQLAlchemy's ``JSON`` stores on SQLite (the default serializer), one call less a
    value; ``fallback`` (SQLAlchemy's own) for anything but plain values (its null markers)."""

    def process(value: Any) -> Any:
        if value is None or type(value) in _PLAIN_JSON:
            return _json_text(value)
        return fallback(value)

    return process


_PLAIN_JSON = frozenset({dict, list, str, int, float, bool})


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
