"""Database engines: SQLite with WAL and foreign keys, PostgreSQL through psycopg 3."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import stamina
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from tolken.errors import ConfigError, TolkenError, Unreachable

__all__ = ["READ_ONLY", "SQLITE_BUSY_TIMEOUT_MS", "make_engine", "open_failure", "parse_url"]

SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option that marks a connection whose transaction only reads. On
# SQLite, every other transaction starts with BEGIN IMMEDIATE: taking the write
# lock up front avoids the "database is locked" error a deferred transaction
# gets when it upgrades from reading to writing while another writer is busy.
READ_ONLY = "tolken_read_only"


def _database_locked(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so); several first connections may race for it.

    The switch needs an exclusive lock and SQLite answers "database is locked" at
    once instead of waiting on the busy timeout, so the loser tries again briefly.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    for attempt in stamina.retry_context(
        on=_database_locked,
        attempts=20,
        timeout=10.0,
        wait_initial=0.01,
        wait_max=0.5,
        wait_jitter=0.05,
    ):
        with attempt:
            cursor.execute("PRAGMA journal_mode = WAL")


def parse_url(url: str | URL) -> URL:
    """Parse a store URL, naming the config key when it is malformed."""
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {exc}", key="store") from None


def make_engine(url: str | URL) -> Engine:
    """Create an engine for a ``sqlite:///`` or ``postgresql+psycopg://`` URL."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {backend!r}: use sqlite:///FILE or postgresql+psycopg://...",
            key="store",
        )
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed)
        return create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"no database driver for {parsed.drivername}: {exc}", key="store"
        ) from None


def open_failure(url: URL, exc: DBAPIError) -> TolkenError:
    """What a failure to open the store at ``url`` means for the user.

    A SQLite file that cannot be opened is a configuration error (exit 2) that
    names the path and why; a database server that does not answer is
    :class:`~tolken.errors.Unreachable` (exit 1), like any other system.
    """
    reason = str(exc.orig or exc).strip()
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return Unreachable(f"cannot open the store: {reason}", system="store")
    path = Path(url.database).absolute()
    if not path.parent.is_dir():
        reason = f"the folder {path.parent} does not exist"
    elif path.is_dir():
        reason = "it is a folder, not a file"
    return ConfigError(f"cannot open the SQLite store {path}: {reason}", key="store")


def _sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {}
    if in_memory:
        # One shared connection, or every connection would see its own empty database.
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin,
        # so BEGIN IMMEDIATE and SAVEPOINT work as written.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            _use_wal(cursor)
            # WAL + NORMAL is durable across application crashes (only an OS crash
            # can lose the last transactions), at a fraction of FULL's fsyncs.
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
