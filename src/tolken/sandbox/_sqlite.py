"""The SQLite plumbing both simulated systems share: one connection, one lock.

Each simulator keeps its state behind a single connection in autocommit mode
(``isolation_level=None``), so transactions are explicit: ``BEGIN IMMEDIATE``
takes the write lock at once instead of failing later on upgrade. Standard
library only; the sandbox imports nothing else of tolken.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["connect", "write_transaction"]


def connect(target: str | Path, schema: str, *, wal: bool = True) -> sqlite3.Connection:
    """A connection for any thread, with ``schema`` created; WAL journal, else in memory."""
    conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL" if wal else "PRAGMA journal_mode=MEMORY")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(schema)
    return conn


@contextmanager
def write_transaction(
    conn: sqlite3.Connection, lock: threading.RLock
) -> Iterator[sqlite3.Connection]:
    """Hold ``lock`` and run one atomic write transaction on ``conn``."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
