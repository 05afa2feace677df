"""SQLite storage of the reference PMS: records, changes feed, idempotency keys, webhooks.

Every operation runs under one lock and one SQLite transaction, and the
``updated_at`` of a write is taken from the monotonic clock inside that lock.
So write order, ``updated_at`` order and changes-feed ``seq`` order are the
same order, which is what makes the list cursor stable (see ``list``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tolken.sandbox._sqlite import connect, write_transaction
from tolken.sandbox.pms.cursor import MonotonicClock
from tolken.sandbox.pms.schema import ID_PREFIX, ResourceType, writable
from tolken.sandbox.pms.validation import ApiError, FieldProblem, merge_patch, normalize

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    type TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, version INTEGER NOT NULL,
    updated_at TEXT NOT NULL, external_ref TEXT, kind TEXT,
    customer_id TEXT, department_id TEXT,
    PRIMARY KEY (type, id));
CREATE INDEX IF NOT EXISTS records_order ON records (type, updated_at, id);
CREATE INDEX IF NOT EXISTS records_external_ref ON records (type, external_ref);
CREATE INDEX IF NOT EXISTS records_customer ON records (customer_id);
CREATE INDEX IF NOT EXISTS records_department ON records (department_id);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT NOT NULL,
    op TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    type TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL, record_id TEXT NOT NULL,
    PRIMARY KEY (type, key));
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, created_at TEXT NOT NULL);
"""

ChangeListener = Callable[[dict[str, Any]], None]


def _body_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Store:
    """The PMS state in one SQLite file (a fresh temporary one when ``path`` is None)."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            tmp = tempfile.mkdtemp(prefix="tolken-pms-")
            path = Path(tmp) / "pms.sqlite3"
            weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True)
        self.path = path
        conn = connect(path, _SCHEMA)
        # Finalizers must not reference self (that would keep the store alive forever).
        weakref.finalize(self, conn.close)
        self._conn = conn
        self._lock = threading.RLock()
        self.clock = MonotonicClock()
        for sql in ("SELECT max(updated_at) FROM records", "SELECT max(at) FROM changes"):
            self.clock.observe(self._conn.execute(sql).fetchone()[0])
        self._listeners: list[ChangeListener] = []

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(feed_item)`` after each committed write (outside the lock)."""
        self._listeners.append(listener)

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn, self._lock)

    def _notify(self, item: dict[str, Any] | None) -> None:
        if item is None:
            return
        for listener in self._listeners:
            listener(item)

    # ----------------------------------------------------------------- reads

    def get(self, resource: ResourceType, record_id: str) -> dict[str, Any] | None:
        """One record, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM records WHERE type = ? AND id = ?", (resource, record_id)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def page(
        self,
        resource: ResourceType,
        *,
        limit: int,
        updated_after: str | None = None,
        after: tuple[str, str] | None = None,
        external_ref: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Records in ``(updated_at, id)`` order after both bounds; and whether more follow."""
        bodies, _last, more = self.page_json(
            resource,
            limit=limit,
            updated_after=updated_after,
            after=after,
            external_ref=external_ref,
        )
        return [json.loads(body) for body in bodies], more

    def page_json(
        self,
        resource: ResourceType,
        *,
        limit: int,
        updated_after: str | None = None,
        after: tuple[str, str] | None = None,
        external_ref: str | None = None,
    ) -> tuple[list[str], tuple[str, str] | None, bool]:
        """Like :meth:`page`, as stored JSON texts, plus the last ``(updated_at, id)``.

        The list endpoint splices the texts into its answer instead of decoding
        and re-encoding every record.

        Because every write moves a record to a position after every existing
        one, a traversal that resumes after the last ``(updated_at, id)`` it
        saw never skips a record and only sees a record again when it was
        written in between.
        """
        sql = "SELECT body, updated_at, id FROM records WHERE type = ?"
        args: list[Any] = [resource]
        if updated_after is not None:
            sql += " AND updated_at > ?"
            args.append(updated_after)
        if after is not None:
            sql += " AND (updated_at > ? OR (updated_at = ? AND id > ?))"
            args.extend([after[0], after[0], after[1]])
        if external_ref is not None:
            sql += " AND external_ref = ?"
            args.append(external_ref)
        sql += " ORDER BY updated_at, id LIMIT ?"
        args.append(limit + 1)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        page = rows[:limit]
        last = (page[-1][1], page[-1][2]) if page else None
        return [row[0] for row in page], last, len(rows) > limit

    def changes(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Feed items with ``seq > after``, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, type, id, op FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [{"seq": s, "type": t, "id": i, "op": o} for s, t, i, o in rows]

    # ---------------------------------------------------------------- writes

    def create(
        self, resource: ResourceType, body: dict[str, Any], idempotency_key: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create a record from a request body; returns (record, replayed).

        With an ``idempotency_key`` seen before for this resource, the same
        body returns the record that key created (``replayed``); a different
        body is a 422 on ``Idempotency-Key``. A failed create stores nothing,
        not even the key.
        """
        doc, problems = normalize(resource, merge_patch({}, body))
        body_hash = _body_hash(body)
        with self._tx() as conn:
            if idempotency_key is not None:
                row = conn.execute(
                    "SELECT body_hash, record_id FROM idempotency WHERE type = ? AND key = ?",
                    (resource, idempotency_key),
                ).fetchone()
                if row is not None:
                    return self._replay(resource, row[0], row[1], body_hash), True
            problems += self._reference_problems(conn, resource, doc)
            if problems:
                raise ApiError(422, problems)
            record_id = ID_PREFIX[resource] + secrets.token_hex(6)
            now = self.clock.next()
            record = {"id": record_id, **doc, "version": 1, "created_at": now, "updated_at": now}
            self._write(conn, resource, record, insert=True)
            if idempotency_key is not None:
                conn.execute(
                    "INSERT INTO idempotency VALUES (?, ?, ?, ?)",
                    (resource, idempotency_key, body_hash, record_id),
                )
            item = self._log(conn, resource, record_id, "upsert", now)
        self._notify(item)
        return record, False

    def _replay(
        self, resource: ResourceType, stored_hash: str, record_id: str, body_hash: str
    ) -> dict[str, Any]:
        if stored_hash != body_hash:
            raise ApiError(
                422,
                [FieldProblem("Idempotency-Key", "was already used with a different request body")],
            )
        record = self.get(resource, record_id)
        if record is None:
            raise ApiError(
                409,
                [
                    FieldProblem(
                        "Idempotency-Key",
                        f"the {resource} {record_id} created with this key has been deleted",
                    )
                ],
            )
        return record

    def patch(
        self,
        resource: ResourceType,
        record_id: str,
        patch: dict[str, Any],
        if_match: int | None = None,
    ) -> dict[str, Any]:
        """Apply a merge patch; 404 when missing, 412 when ``if_match`` is stale.

        A patch that changes nothing leaves version, ``updated_at`` and the
        feed alone.
        """
        with self._tx() as conn:
            current = self._current(conn, resource, record_id, if_match)
            before = writable(resource, current)
            doc, problems = normalize(resource, merge_patch(before, patch))
            problems += self._reference_problems(conn, resource, doc)
            if resource == "customer":
                problems += self._kind_problems(conn, current, doc)
            if problems:
                raise ApiError(422, problems)
            if doc == before:
                return current
            now = self.clock.next()
            record = {
                **current,
                **doc,
                "version": current["version"] + 1,
                "updated_at": now,
            }
            self._write(conn, resource, record, insert=False)
            item = self._log(conn, resource, record_id, "upsert", now)
        self._notify(item)
        return record

    def delete(self, resource: ResourceType, record_id: str, if_match: int | None = None) -> None:
        """Delete a record and log a tombstone; 409 for a customer a project refers to."""
        with self._tx() as conn:
            self._current(conn, resource, record_id, if_match)
            if resource == "customer":
                (uses,) = conn.execute(
                    "SELECT count(*) FROM records WHERE type = 'project'"
                    " AND (customer_id = ? OR department_id = ?)",
                    (record_id, record_id),
                ).fetchone()
                if uses:
                    raise ApiError(
                        409, [FieldProblem("id", f"customer is referenced by {uses} project(s)")]
                    )
            conn.execute("DELETE FROM records WHERE type = ? AND id = ?", (resource, record_id))
            item = self._log(conn, resource, record_id, "delete", self.clock.next())
        self._notify(item)

    def reset(self) -> None:
        """Forget every record, key and webhook. Feed ``seq`` keeps counting up."""
        with self._tx() as conn:
            for table in ("records", "changes", "idempotency", "webhooks"):
                conn.execute(f"DELETE FROM {table}")  # fixed table names, no input

    def _current(
        self, conn: sqlite3.Connection, resource: ResourceType, record_id: str, if_match: int | None
    ) -> dict[str, Any]:
        row = conn.execute(
            "SELECT body FROM records WHERE type = ? AND id = ?", (resource, record_id)
        ).fetchone()
        if row is None:
            raise ApiError(404, [FieldProblem("id", f"no {resource} with id {record_id}")])
        current: dict[str, Any] = json.loads(row[0])
        version = current["version"]
        if if_match is not None and if_match != version:
            raise ApiError(
                412,
                [FieldProblem("If-Match", f"the {resource} is at version {version}")],
                headers={"ETag": f'"{version}"'},
                extra={"current_version": version},
            )
        return current

    def _reference_problems(
        self, conn: sqlite3.Connection, resource: ResourceType, doc: dict[str, Any]
    ) -> list[FieldProblem]:
        if resource != "project":
            return []
        problems: list[FieldProblem] = []
        for field in ("customer_id", "department_id"):
            ref = doc.get(field)
            if not isinstance(ref, str):
                continue
            row = conn.execute(
                "SELECT kind FROM records WHERE type = 'customer' AND id = ?", (ref,)
            ).fetchone()
            if row is None:
                problems.append(FieldProblem(field, f"no customer with id {ref}"))
            elif field == "department_id" and row[0] != "department":
                problems.append(
                    FieldProblem(field, f"customer {ref} is a {row[0]}, not a department")
                )
        return problems

    def _kind_problems(
        self, conn: sqlite3.Connection, current: dict[str, Any], doc: dict[str, Any]
    ) -> list[FieldProblem]:
        if current["kind"] != "department" or doc["kind"] == "department":
            return []
        (uses,) = conn.execute(
            "SELECT count(*) FROM records WHERE type = 'project' AND department_id = ?",
            (current["id"],),
        ).fetchone()
        if not uses:
            return []
        return [FieldProblem("kind", f"customer is the department of {uses} project(s)")]

    def _write(
        self,
        conn: sqlite3.Connection,
        resource: ResourceType,
        record: dict[str, Any],
        *,
        insert: bool,
    ) -> None:
        values = (
            json.dumps(record, ensure_ascii=False, separators=(",", ":")),
            record["version"],
            record["updated_at"],
            record.get("external_ref"),
            record.get("kind"),
            record.get("customer_id"),
            record.get("department_id"),
            resource,
            record["id"],
        )
        if insert:
            conn.execute(
                "INSERT INTO records (body, version, updated_at, external_ref, kind,"
                " customer_id, department_id, type, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        else:
            conn.execute(
                "UPDATE records SET body = ?, version = ?, updated_at = ?, external_ref = ?,"
                " kind = ?, customer_id = ?, department_id = ? WHERE type = ? AND id = ?",
                values,
            )

    @staticmethod
    def _log(
        conn: sqlite3.Connection, resource: ResourceType, record_id: str, op: str, at: str
    ) -> dict[str, Any]:
        cur = conn.execute(
            "INSERT INTO changes (type, id, op, at) VALUES (?, ?, ?, ?)",
            (resource, record_id, op, at),
        )
        return {"seq": cur.lastrowid, "type": resource, "id": record_id, "op": op}

    # -------------------------------------------------------------- webhooks

    def add_webhook(self, url: str, secret: str) -> dict[str, Any]:
        """Register a receiver; the returned shape never includes the secret."""
        hook_id = "whk_" + secrets.token_hex(6)
        now = self.clock.next()
        with self._tx() as conn:
            conn.execute("INSERT INTO webhooks VALUES (?, ?, ?, ?)", (hook_id, url, secret, now))
        return {"id": hook_id, "url": url, "created_at": now}

    def webhooks(self) -> list[dict[str, Any]]:
        """Every registered receiver, oldest first, without secrets."""
        return [{"id": h, "url": u, "created_at": c} for h, u, _s, c in self.webhook_secrets()]

    def webhook_secrets(self) -> list[tuple[str, str, str, str]]:
        """``(id, url, secret, created_at)`` of every receiver, for the delivery worker."""
        with self._lock:
            return list(
                self._conn.execute(
                    "SELECT id, url, secret, created_at FROM webhooks ORDER BY created_at, id"
                )
            )

    def delete_webhook(self, hook_id: str) -> bool:
        """Unregister a receiver; False when there was none with that id."""
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,))
        return cur.rowcount > 0
