"""Records of one cycle set aside in SQL, so a cycle's memory does not grow with them.

A :class:`Staging` is a private SQLite database in a temporary file (SQLite
deletes it when it is closed), one per cycle: not the tenant's store, so it
needs no migration and is the same whatever the store runs on. It holds

- **records** read this cycle (:meth:`Staging.put`, :meth:`Staging.pages`,
  :meth:`Staging.get_many`), under a *kind* (``pms:customers``, ``po:customers``,
  …); a record put again replaces the earlier copy (the later one is fresher);
- **candidate pools** (:class:`StagedCandidates`): records a record of the other
  side may match, indexed by each merge rule's normalised key: the match index
  of :mod:`tolken.engine.paged`, looked up a page at a time;
- **claim books** (:class:`StagedClaims`): what the match pass found;
- **listings noted** (:meth:`Staging.note_listed`): the id, content hash and
  time of every record a PowerOffice listing gave, for the cursor's advance and
  a reconcile's delete check (:class:`StagedIds`), without their data.

Only the page in hand is in memory; SQLite's page cache is bounded.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from tolken.connectors.base import RemoteRecord
from tolken.engine.match import MatchResult, MatchRule
from tolken.engine.model import ProjectedRecord, Side, Values

__all__ = ["PAGE", "Listed", "StagedCandidates", "StagedClaims", "StagedIds", "Staging"]

T = TypeVar("T")

Listed = tuple[str, str, datetime | None]
"""A record noted from a listing: its id, content hash and modification time."""

PAGE = 500
"""Records per page read back, and ids per ``IN (...)`` query."""

# ``record`` is a rowid table (its key in a separate index): its rows are ~0.5-2 KB,
# and WITHOUT ROWID stores them in the key's b-tree, which made writing and reading
# them back about twice as costly (measured).
_SCHEMA = """
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE record (kind TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL, digest TEXT,
                     PRIMARY KEY (kind, id));
CREATE TABLE pool_key (pool TEXT NOT NULL, rule INTEGER NOT NULL, key TEXT NOT NULL,
                       id TEXT NOT NULL, PRIMARY KEY (pool, rule, key, id)) WITHOUT ROWID;
CREATE INDEX pool_key_by_id ON pool_key (pool, id);
CREATE TABLE listed (kind TEXT NOT NULL, id TEXT NOT NULL, digest TEXT NOT NULL,
                     changed_at TEXT, PRIMARY KEY (kind, id)) WITHOUT ROWID;
CREATE TABLE claim (book TEXT NOT NULL, target TEXT NOT NULL, source TEXT NOT NULL,
                    rule TEXT NOT NULL, alone INTEGER NOT NULL,
                    PRIMARY KEY (book, target, source)) WITHOUT ROWID;
"""


# Records are pickled as a tuple of their fields, rebuilt positionally, and an aware UTC
# (or naive) ``changed_at`` as its ISO text: pickling a datetime with its tzinfo costs more
# than the rest of a record, and this form reads back equal (``UTC`` itself).
_RAW_FIELDS = tuple(f.name for f in fields(RemoteRecord))
_PROJECTED_FIELDS = tuple(f.name for f in fields(ProjectedRecord))
_RAW_AT = _RAW_FIELDS.index("changed_at")
_PROJECTED_AT = _PROJECTED_FIELDS.index("changed_at")


def _dump(item: RemoteRecord | ProjectedRecord) -> bytes:
    names, at = (
        (_RAW_FIELDS, _RAW_AT)
        if isinstance(item, RemoteRecord)
        else (_PROJECTED_FIELDS, _PROJECTED_AT)
    )
    row = [getattr(item, n) for n in names]
    changed_at = row[at]
    if changed_at is not None and changed_at.tzinfo in (None, UTC):
        row[at] = changed_at.isoformat()
    return pickle.dumps(tuple(row), pickle.HIGHEST_PROTOCOL)


def _load(body: bytes, at: int) -> list[Any]:
    row = list(pickle.loads(body))
    if isinstance(row[at], str):
        row[at] = datetime.fromisoformat(row[at])
    return row


def _load_raw(body: bytes) -> RemoteRecord:
    return RemoteRecord(*_load(body, _RAW_AT))


def _load_projected(body: bytes) -> ProjectedRecord:
    return ProjectedRecord(*_load(body, _PROJECTED_AT))


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _chunks(items: Sequence[str], size: int = PAGE) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Staging:
    """One cycle's records, pools and claims in a temporary SQLite file (see module docstring)."""

    def __init__(self) -> None:
        self._conn: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        # Opened on first use: an idle cycle sets nothing aside and opens nothing.
        if self._conn is None:
            # "": a private on-disk database, deleted when closed; one thread at a time uses it.
            self._conn = sqlite3.connect("", check_same_thread=False, isolation_level=None)
            self._conn.executescript(_SCHEMA)
        return self._conn

    def close(self) -> None:
        """Drop everything (the file goes with the connection)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- records --------------------------------------------------------------

    def put(self, kind: str, records: Iterable[RemoteRecord]) -> int:
        """Keep ``records`` under ``kind`` (a later copy of an id replaces the earlier one)."""
        return self._put(kind, ((r.id, r) for r in records))

    def put_hashed(self, kind: str, records: Iterable[tuple[RemoteRecord, str]]) -> int:
        """Keep ``(record, content hash)`` pairs under ``kind`` (as :meth:`put`); the hash comes
        back with the record from :meth:`get_hashed`, not worked out again."""
        pairs = list(records)
        return self._put(kind, ((r.id, r) for r, _ in pairs), (d for _, d in pairs))

    def put_projected(self, kind: str, records: Iterable[ProjectedRecord]) -> int:
        """Keep projected records under ``kind`` (as :meth:`put`)."""
        return self._put(kind, ((p.id, p) for p in records))

    def _put(
        self,
        kind: str,
        items: Iterable[tuple[str, RemoteRecord | ProjectedRecord]],
        digests: Iterable[str | None] | None = None,
    ) -> int:
        # Pickled: written and read back by this process only, within the cycle.
        rows: list[tuple[str, str, bytes, str | None]]
        if digests is None:
            rows = [(kind, i, _dump(item), None) for i, item in items]
        else:
            rows = [
                (kind, i, _dump(item), digest)
                for (i, item), digest in zip(items, digests, strict=True)
            ]
        if not rows:
            return 0
        self._db.executemany("INSERT OR REPLACE INTO record VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def copy(self, kind: str, to: str, ids: Collection[str]) -> None:
        """Keep the records of ``kind`` with these ids under ``to`` too (as :meth:`put`; copied in
        SQL, not read back and written again)."""
        if self._conn is None:
            return
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            self._db.execute(
                f"INSERT OR REPLACE INTO record SELECT ?, id, body, digest FROM record "
                f"WHERE kind = ? AND id IN ({marks})",
                (to, kind, *chunk),
            )

    def count(self, kind: str) -> int:
        """How many records ``kind`` holds."""
        if self._conn is None:
            return 0
        (n,) = self._db.execute("SELECT count(*) FROM record WHERE kind = ?", (kind,)).fetchone()
        return int(n)

    def pages(self, kind: str, size: int = PAGE) -> Iterator[list[RemoteRecord]]:
        """The records of ``kind`` by id, ``size`` at a time (read page by page, by key)."""
        return self._pages(kind, size, _load_raw)

    def pages_projected(self, kind: str, size: int = PAGE) -> Iterator[list[ProjectedRecord]]:
        """The records of ``kind`` put with :meth:`put_projected`, by id, ``size`` at a time."""
        return self._pages(kind, size, _load_projected)

    def _pages(self, kind: str, size: int, load: Callable[[bytes], T]) -> Iterator[list[T]]:
        if self._conn is None:
            return
        rows = self._db.execute(
            "SELECT id, body FROM record WHERE kind = ? ORDER BY id LIMIT ?", (kind, size)
        ).fetchall()
        while rows:
            after = rows[-1][0]
            yield [load(body) for _, body in rows]
            rows = self._db.execute(
                "SELECT id, body FROM record WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
                (kind, after, size),
            ).fetchall()

    def get_many(self, kind: str, ids: Collection[str]) -> dict[str, RemoteRecord]:
        """The records of ``kind`` with these ids."""
        return self._get_many(kind, ids, _load_raw)

    def get_hashed(
        self, kind: str, ids: Collection[str]
    ) -> dict[str, tuple[RemoteRecord, str | None]]:
        """The records of ``kind`` with these ids, each with the content hash it was put with
        (:meth:`put_hashed`; None when put without one)."""
        out: dict[str, tuple[RemoteRecord, str | None]] = {}
        if self._conn is None:
            return out
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for record_id, body, digest in self._db.execute(
                f"SELECT id, body, digest FROM record WHERE kind = ? AND id IN ({marks})",
                (kind, *chunk),
            ):
                out[record_id] = (_load_raw(body), digest)
        return out

    def get_projected(self, kind: str, ids: Collection[str]) -> dict[str, ProjectedRecord]:
        """The records of ``kind`` (put with :meth:`put_projected`) with these ids."""
        return self._get_many(kind, ids, _load_projected)

    def _get_many(
        self, kind: str, ids: Collection[str], load: Callable[[bytes], T]
    ) -> dict[str, T]:
        out: dict[str, T] = {}
        if self._conn is None:
            return out
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for record_id, body in self._db.execute(
                f"SELECT id, body FROM record WHERE kind = ? AND id IN ({marks})",
                (kind, *chunk),
            ):
                out[record_id] = load(body)
        return out

    def has(self, kind: str, ids: Collection[str]) -> set[str]:
        """Which of these ids ``kind`` holds."""
        return self._has_in("record", kind, ids)

    def _has_in(self, table: str, kind: str, ids: Collection[str]) -> set[str]:
        """Which of these ids ``kind`` has in ``table`` (``record`` or ``listed``)."""
        out: set[str] = set()
        if self._conn is None:
            return out
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            out.update(
                i
                for (i,) in self._db.execute(
                    f"SELECT id FROM {table} WHERE kind = ? AND id IN ({marks})",
                    (kind, *chunk),
                )
            )
        return out

    def delete(self, kind: str, ids: Collection[str]) -> None:
        """Forget these records of ``kind``."""
        if self._conn is None:
            return
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            self._db.execute(
                f"DELETE FROM record WHERE kind = ? AND id IN ({marks})", (kind, *chunk)
            )

    def drop(self, kind: str) -> None:
        """Forget the records (and the listing noted) of ``kind``."""
        if self._conn is None:
            return
        self._db.execute("DELETE FROM record WHERE kind = ?", (kind,))
        self._db.execute("DELETE FROM listed WHERE kind = ?", (kind,))

    def ids(self, kind: str) -> StagedIds:
        """The ids of the records of ``kind``, as a set read from SQL."""
        return StagedIds(
            lambda ids: self.has(kind, ids),
            lambda: self.count(kind),
            lambda: self._ids("record", kind),
        )

    def _ids(self, table: str, kind: str) -> Iterator[str]:
        """The ids of ``kind`` in ``table`` (``record`` or ``listed``), by id, a page at a time."""
        if self._conn is None:
            return
        rows = self._db.execute(
            f"SELECT id FROM {table} WHERE kind = ? ORDER BY id LIMIT ?", (kind, PAGE)
        ).fetchall()
        while rows:
            yield from (i for (i,) in rows)
            rows = self._db.execute(
                f"SELECT id FROM {table} WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
                (kind, rows[-1][0], PAGE),
            ).fetchall()

    # -- listings noted -------------------------------------------------------

    def note_listed(self, kind: str, rows: Iterable[Listed]) -> int:
        """Note ``(id, content hash, changed_at)`` of listed records under ``kind`` (an id noted
        again replaces the earlier row: the later read is fresher)."""
        values = [(kind, i, d, at.isoformat() if at is not None else None) for i, d, at in rows]
        if not values:
            return 0
        self._db.executemany("INSERT OR REPLACE INTO listed VALUES (?, ?, ?, ?)", values)
        return len(values)

    def listed(self, kind: str, size: int = PAGE) -> Iterator[list[Listed]]:
        """The rows noted under ``kind``, by id, ``size`` at a time."""
        if self._conn is None:
            return
        rows = self._db.execute(
            "SELECT id, digest, changed_at FROM listed WHERE kind = ? ORDER BY id LIMIT ?",
            (kind, size),
        ).fetchall()
        while rows:
            after = rows[-1][0]
            yield [(i, d, _time(at)) for i, d, at in rows]
            rows = self._db.execute(
                "SELECT id, digest, changed_at FROM listed WHERE kind = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (kind, after, size),
            ).fetchall()

    def listed_rows(self, kind: str, ids: Collection[str]) -> list[Listed]:
        """The rows noted under ``kind`` with these ids."""
        out: list[Listed] = []
        if self._conn is None:
            return out
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            out.extend(
                (i, d, _time(at))
                for i, d, at in self._db.execute(
                    f"SELECT id, digest, changed_at FROM listed WHERE kind = ? AND id IN ({marks})",
                    (kind, *chunk),
                )
            )
        return out

    def listed_ids(self, kind: str) -> StagedIds:
        """The ids noted under ``kind``, as a set read from SQL."""

        def count() -> int:
            if self._conn is None:
                return 0
            (n,) = self._db.execute(
                "SELECT count(*) FROM listed WHERE kind = ?", (kind,)
            ).fetchone()
            return int(n)

        return StagedIds(
            lambda ids: self._has_in("listed", kind, ids), count, lambda: self._ids("listed", kind)
        )

    # -- pools and claims -----------------------------------------------------

    def candidates(self, pool: str, side: Side, rules: Sequence[MatchRule]) -> StagedCandidates:
        """An empty candidate pool of ``side``'s records, matched by ``rules``."""
        return StagedCandidates(self, pool, side, tuple(rules))

    def claims(self, book: str) -> StagedClaims:
        """An empty claim book."""
        self._db.execute("DELETE FROM claim WHERE book = ?", (book,))
        return StagedClaims(self._db, book)


class StagedCandidates:
    """A :class:`~tolken.engine.paged.Candidates` pool whose records and keys live in SQL.

    The records are kept projected (kind ``pool:<name>``, what matching reads)
    and as read (``pool-raw:<name>``, for the executor when one is linked).
    """

    def __init__(
        self, staging: Staging, pool: str, side: Side, rules: tuple[MatchRule, ...]
    ) -> None:
        self._staging, self._db = staging, staging._db  # noqa: SLF001 (same module)
        self.pool, self.side, self.rules = pool, side, rules
        self.kind, self.raw_kind = f"pool:{pool}", f"pool-raw:{pool}"
        self._staged: tuple[str, str] | None = None
        self._db.execute("DELETE FROM pool_key WHERE pool = ?", (pool,))
        staging.drop(self.kind)
        staging.drop(self.raw_kind)

    def add(self, records: Iterable[tuple[RemoteRecord, ProjectedRecord]]) -> None:
        """Pool these records (raw and projected); a later copy of an id replaces the earlier one.

        A tombstone is not a candidate, and does not replace an earlier copy.
        """
        kept = [(raw, p) for raw, p in records if not p.deleted]
        if not kept:
            return
        self._index([p for _, p in kept])
        self._staging.put_projected(self.kind, (p for _, p in kept))
        self._staging.put(self.raw_kind, (raw for raw, _ in kept))

    def add_staged(self, projected: Sequence[ProjectedRecord], kind: str, raw_kind: str) -> None:
        """Pool records the staging holds already: projected under ``kind``, as read under
        ``raw_kind``. Only their keys are written; the records are read from there when asked
        for (not copied). Every call names the same two kinds, and an id pooled this way is not
        also pooled by :meth:`add` (the caller keeps the two apart)."""
        if self._staged not in (None, (kind, raw_kind)):
            raise ValueError("a pool refers to one pair of staged kinds")
        self._staged = (kind, raw_kind)
        self._index([p for p in projected if not p.deleted])

    def _index(self, projected: Sequence[ProjectedRecord]) -> None:
        ids = [p.id for p in projected]
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            self._db.execute(
                f"DELETE FROM pool_key WHERE pool = ? AND id IN ({marks})",
                (self.pool, *chunk),
            )
        keys = []
        for record in projected:
            for index, rule in enumerate(self.rules):
                key = rule.key(self.side, record.values)
                if key is not None:
                    keys.append((self.pool, index, _key(key), record.id))
        self._db.executemany("INSERT OR REPLACE INTO pool_key VALUES (?, ?, ?, ?)", keys)

    def empty(self) -> bool:
        """Whether no record was pooled (then nothing can match)."""
        return (
            self._db.execute(
                "SELECT 1 FROM pool_key WHERE pool = ? LIMIT 1", (self.pool,)
            ).fetchone()
            is None
        )

    def find_many(self, values: Sequence[Values]) -> list[MatchResult]:
        """The match of each record of the other side: one query per rule for the lot."""
        other: Side = "pms" if self.side == "poweroffice" else "poweroffice"
        results = [MatchResult()] * len(values)
        if self.empty():
            return results  # no key to look up (an initial sync's pool): none is worked out
        open_ = list(range(len(values)))
        for index, rule in enumerate(self.rules):
            if not open_:
                break
            keyed: dict[str, list[int]] = {}
            for position in open_:
                key = rule.key(other, values[position])
                if key is not None:
                    keyed.setdefault(_key(key), []).append(position)
            found: dict[str, list[str]] = {}
            for chunk in _chunks(list(keyed)):
                marks = ",".join("?" * len(chunk))
                for key, record_id in self._db.execute(
                    f"SELECT key, id FROM pool_key WHERE pool = ? AND rule = ? "
                    f"AND key IN ({marks}) ORDER BY key, id",
                    (self.pool, index, *chunk),
                ):
                    found.setdefault(key, []).append(record_id)
            decided = set()
            for key, ids in found.items():
                for position in keyed[key]:
                    results[position] = MatchResult(rule=rule.name, candidates=tuple(ids))
                    decided.add(position)
            open_ = [p for p in open_ if p not in decided]
        return results

    def get_many(self, ids: Collection[str]) -> dict[str, ProjectedRecord]:
        """The pooled records with these ids, projected."""
        out = self._staging.get_projected(self.kind, ids)
        if self._staged is not None and len(out) < len(ids):
            out.update(self._staging.get_projected(self._staged[0], set(ids) - out.keys()))
        return out

    def raw_many(self, ids: Collection[str]) -> dict[str, RemoteRecord]:
        """The pooled records with these ids, as read."""
        out = self._staging.get_many(self.raw_kind, ids)
        if self._staged is not None and len(out) < len(ids):
            out.update(self._staging.get_many(self._staged[1], set(ids) - out.keys()))
        return out


class StagedClaims:
    """A :class:`~tolken.engine.paged.ClaimBook` in SQL."""

    def __init__(self, db: sqlite3.Connection, book: str) -> None:
        self._db, self.book = db, book

    def note(self, matched: Sequence[tuple[str, MatchResult]]) -> None:
        """Note each source's unique claim, and every candidate an ambiguous match named."""
        rows: list[tuple[str, str, str, str, int]] = []
        for source_id, found in matched:
            if found.ambiguous:
                rows.extend((self.book, c, source_id, str(found.rule), 0) for c in found.candidates)
            elif found.unique is not None:
                rows.append((self.book, found.unique, source_id, str(found.rule), 1))
        self._db.executemany("INSERT OR REPLACE INTO claim VALUES (?, ?, ?, ?, ?)", rows)

    def claimants(self, targets: Collection[str]) -> dict[str, list[tuple[str, str]]]:
        """The claimants of each target, by source id."""
        out: dict[str, list[tuple[str, str]]] = {t: [] for t in targets}
        for chunk in _chunks(list(targets)):
            marks = ",".join("?" * len(chunk))
            for target, source, rule in self._db.execute(
                f"SELECT target, source, rule FROM claim WHERE book = ? AND alone = 1 "
                f"AND target IN ({marks}) ORDER BY target, source",
                (self.book, *chunk),
            ):
                out[target].append((source, rule))
        return out

    def reported(self, ids: Collection[str]) -> set[str]:
        """Which of these targets were claimed or named ambiguous."""
        out: set[str] = set()
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            out.update(
                target
                for (target,) in self._db.execute(
                    f"SELECT DISTINCT target FROM claim WHERE book = ? AND target IN ({marks})",
                    (self.book, *chunk),
                )
            )
        return out


class StagedIds(AbstractSet[str]):
    """Ids kept in a :class:`Staging` table, as a read-only set that is not held in memory.

    A membership test is one query; :meth:`prefetch` answers a page of ids in
    one query first (for a caller streaming ids by pages), and those answers
    are kept until the next :meth:`prefetch`.
    """

    def __init__(
        self,
        has: Callable[[Collection[str]], set[str]],
        count: Callable[[], int],
        ids: Callable[[], Iterator[str]],
    ) -> None:
        self._has, self._count, self._ids = has, count, ids
        self._known: dict[str, bool] = {}

    def prefetch(self, ids: Collection[str]) -> None:
        """Answer these ids in one query per :data:`PAGE` (the earlier answers are dropped)."""
        present = self._has(ids)
        self._known = {i: i in present for i in ids}

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str):
            return False
        known = self._known.get(item)
        return bool(self._has([item])) if known is None else known

    def __len__(self) -> int:
        return self._count()

    def __iter__(self) -> Iterator[str]:
        return self._ids()
