"""Parked failures, recorded conflicts, and the dashboard's counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, false, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tolken._redact import shared as shared_redactor
from tolken.errors import RecordError, TolkenError
from tolken.store._links import LinkRepository, check_flow
from tolken.store._models import SIDES, WINNERS, ConflictRow, FailureRow, PendingCreateRow
from tolken.store._records import (
    AlreadySettled,
    ConflictRecord,
    Failure,
    FlowCounts,
    FlowId,
    Side,
    UnknownRecord,
    Winner,
)

__all__ = ["DEFAULT_RETRY_BASE_SECONDS", "DEFAULT_RETRY_MAX_SECONDS", "IssueRepository"]

DEFAULT_RETRY_BASE_SECONDS = 60.0
DEFAULT_RETRY_MAX_SECONDS = 6 * 3600.0

_FAILURE_COLUMNS = (
    FailureRow.id,
    FailureRow.tenant,
    FailureRow.flow,
    FailureRow.side,
    FailureRow.record_id,
    FailureRow.error_class,
    FailureRow.message,
    FailureRow.status,
    FailureRow.details,
    FailureRow.attempts,
    FailureRow.next_attempt_at,
    FailureRow.first_seen,
    FailureRow.last_seen,
    FailureRow.resolved,
    FailureRow.resolved_at,
)
_CONFLICT_COLUMNS = (
    ConflictRow.id,
    ConflictRow.tenant,
    ConflictRow.flow,
    ConflictRow.link_id,
    ConflictRow.field,
    ConflictRow.poweroffice_value,
    ConflictRow.pms_value,
    ConflictRow.shadow_value,
    ConflictRow.policy,
    ConflictRow.winner,
    ConflictRow.resolved,
    ConflictRow.run_id,
    ConflictRow.created_at,
    ConflictRow.resolved_at,
)


def retry_delay(attempts: int, base: float, cap: float) -> timedelta:
    """Exponential backoff: ``base`` after the first failure, doubling, at most ``cap``."""
    exponent = min(max(attempts - 1, 0), 32)  # bounded so the float never overflows
    return timedelta(seconds=min(base * 2.0**exponent, cap))


class IssueRepository(LinkRepository):
    """What needs a person's attention: failures and conflicts."""

    # -- failures ----------------------------------------------------------

    def record_failure(
        self,
        flow: FlowId,
        side: Side,
        record_id: str,
        error_class: str,
        message: str,
        *,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
        retry_base_seconds: float = DEFAULT_RETRY_BASE_SECONDS,
        retry_max_seconds: float = DEFAULT_RETRY_MAX_SECONDS,
    ) -> Failure:
        """Park a record, or count another attempt if it is already parked.

        ``side`` and ``record_id`` name the record the failure is about; the
        message is kept verbatim but for secrets (the process's redactor
        replaces them in it and in ``details``). The next attempt is due after
        an exponential backoff on the number of attempts.
        """
        check_flow(flow)
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}")
        record_id = str(record_id)
        now = self.now()
        redactor = shared_redactor()
        changes: dict[str, Any] = {
            "error_class": error_class,
            "message": redactor.text(message),
            "status": status,
            "details": redactor.value(dict(details)) if details is not None else None,
            "last_seen": now,
        }
        with self._write() as conn:
            for _ in range(3):  # a concurrent writer may insert between our read and write
                existing = self._open_failure(conn, flow, side, record_id)
                if existing is not None:
                    attempts = existing.attempts + 1
                    row = conn.execute(
                        update(FailureRow)
                        .where(FailureRow.id == existing.id)
                        .values(
                            {
                                **changes,
                                "attempts": attempts,
                                "next_attempt_at": now
                                + retry_delay(attempts, retry_base_seconds, retry_max_seconds),
                            }
                        )
                        .returning(*_FAILURE_COLUMNS)
                    ).one()
                    return Failure(*row)
                try:
                    with conn.begin_nested():
                        row = conn.execute(
                            insert(FailureRow)
                            .values(
                                {
                                    **changes,
                                    "tenant": self.tenant,
                                    "flow": flow,
                                    "side": side,
                                    "record_id": record_id,
                                    "attempts": 1,
                                    "next_attempt_at": now
                                    + retry_delay(1, retry_base_seconds, retry_max_seconds),
                                    "first_seen": now,
                                    "resolved": False,
                                }
                            )
                            .returning(*_FAILURE_COLUMNS)
                        ).one()
                        return Failure(*row)
                except IntegrityError:
                    continue
        raise RuntimeError("could not record the failure under concurrent writes")

    def record_error(
        self,
        flow: FlowId,
        side: Side,
        record_id: str,
        error: TolkenError,
        *,
        in_doubt: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Failure:
        """Park a record with a tolken error: its class, verbatim message, status, field errors.

        ``in_doubt``: per side, the field values (PMS paths) of a write whose answer never came
        (it may have landed); kept under ``details["in_doubt"]`` for the record's next merge.
        """
        details: dict[str, Any] | None = None
        if isinstance(error, RecordError) and (error.field_errors or error.remote):
            details = {
                "field_errors": [
                    {"field": fe.field, "message": fe.message} for fe in error.field_errors
                ],
                "remote": error.remote,
            }
        if in_doubt:
            details = {**(details or {}), "in_doubt": {k: dict(v) for k, v in in_doubt.items()}}
        return self.record_failure(
            flow,
            side,
            record_id,
            type(error).__name__,
            error.message,
            status=error.status,
            details=details,
        )

    def _open_failure(
        self, conn: Connection, flow: str, side: str, record_id: str
    ) -> Failure | None:
        row = conn.execute(
            select(*_FAILURE_COLUMNS)
            .where(
                FailureRow.tenant == self.tenant,
                FailureRow.flow == flow,
                FailureRow.side == side,
                FailureRow.record_id == record_id,
                FailureRow.resolved == false(),
            )
            # Lock the row (PostgreSQL) so concurrent workers count every attempt;
            # SQLite's BEGIN IMMEDIATE already serialises writers.
            .with_for_update()
        ).first()
        return Failure(*row) if row is not None else None

    def resolve_failure(self, flow: FlowId, side: Side, record_id: str) -> bool:
        """Mark a parked record as done (it synchronised); False if it was not parked."""
        with self._write() as conn:
            result = conn.execute(
                update(FailureRow)
                .where(
                    FailureRow.tenant == self.tenant,
                    FailureRow.flow == flow,
                    FailureRow.side == side,
                    FailureRow.record_id == str(record_id),
                    FailureRow.resolved == false(),
                )
                .values(resolved=True, resolved_at=self.now())
            )
        return result.rowcount > 0

    def due_failures(
        self,
        flow: FlowId | None = None,
        *,
        now: datetime | None = None,
        limit: int | None = None,
    ) -> list[Failure]:
        """Parked records whose next attempt is due, the longest-waiting first."""
        stmt = (
            select(*_FAILURE_COLUMNS)
            .where(
                FailureRow.tenant == self.tenant,
                FailureRow.resolved == false(),
                FailureRow.next_attempt_at <= (now or self.now()),
            )
            .order_by(FailureRow.next_attempt_at, FailureRow.id)
            .limit(limit)
        )
        if flow is not None:
            stmt = stmt.where(FailureRow.flow == flow)
        with self._read() as conn:
            return [Failure(*row) for row in conn.execute(stmt)]

    def list_failures(
        self, flow: FlowId | None = None, *, include_resolved: bool = False
    ) -> list[Failure]:
        """Parked records (and resolved ones when asked), oldest first."""
        stmt = select(*_FAILURE_COLUMNS).where(FailureRow.tenant == self.tenant)
        if flow is not None:
            stmt = stmt.where(FailureRow.flow == flow)
        if not include_resolved:
            stmt = stmt.where(FailureRow.resolved == false())
        with self._read() as conn:
            return [Failure(*row) for row in conn.execute(stmt.order_by(FailureRow.id))]

    def retry_failures_now(self, failure_ids: Iterable[int] | None = None) -> int:
        """Make parked records due at once (``tolken retry``); returns how many.

        Ids of resolved failures, or of another tenant's, are left out of the count.
        """
        stmt = (
            update(FailureRow)
            .where(FailureRow.tenant == self.tenant, FailureRow.resolved == false())
            .values(next_attempt_at=self.now())
        )
        if failure_ids is not None:
            stmt = stmt.where(FailureRow.id.in_(list(failure_ids)))
        with self._write() as conn:
            return conn.execute(stmt).rowcount

    # -- conflicts ---------------------------------------------------------

    def record_conflict(
        self,
        flow: FlowId,
        link_id: int,
        field: str,
        *,
        poweroffice_value: Any,
        pms_value: Any,
        shadow_value: Any,
        policy: str,
        winner: Winner,
        run_id: int | None = None,
    ) -> ConflictRecord:
        """Record a field changed on both sides; ``winner='parked'`` leaves it for a person.

        Raises :class:`UnknownRecord` if ``link_id`` is not one of the tenant's links.
        """
        check_flow(flow)
        if winner not in WINNERS:
            raise ValueError(f"unknown winner {winner!r}")
        now = self.now()
        with self._write() as conn:
            self._flows_of(conn, [link_id])
            row = conn.execute(
                insert(ConflictRow)
                .values(
                    tenant=self.tenant,
                    flow=flow,
                    link_id=link_id,
                    field=field,
                    poweroffice_value=poweroffice_value,
                    pms_value=pms_value,
                    shadow_value=shadow_value,
                    policy=policy,
                    winner=winner,
                    resolved=winner != "parked",
                    run_id=run_id,
                    created_at=now,
                    resolved_at=None if winner == "parked" else now,
                )
                .returning(*_CONFLICT_COLUMNS)
            ).one()
        return ConflictRecord(*row)

    def list_conflicts(
        self,
        flow: FlowId | None = None,
        *,
        link_id: int | None = None,
        parked_only: bool = False,
        limit: int | None = None,
    ) -> list[ConflictRecord]:
        """Recorded conflicts, newest first."""
        stmt = select(*_CONFLICT_COLUMNS).where(ConflictRow.tenant == self.tenant)
        if flow is not None:
            stmt = stmt.where(ConflictRow.flow == flow)
        if link_id is not None:
            stmt = stmt.where(ConflictRow.link_id == link_id)
        if parked_only:
            stmt = stmt.where(ConflictRow.resolved == false())
        stmt = stmt.order_by(ConflictRow.created_at.desc(), ConflictRow.id.desc()).limit(limit)
        with self._read() as conn:
            return [ConflictRecord(*row) for row in conn.execute(stmt)]

    def resolve_conflict(self, conflict_id: int, winner: Side) -> ConflictRecord:
        """Settle a parked conflict by hand: the engine then writes the winner's value.

        Raises :class:`UnknownRecord` for an id that is not one of the tenant's
        conflicts, and :class:`AlreadySettled` (changing nothing) for a conflict
        that is no longer parked.
        """
        if winner not in SIDES:
            raise ValueError(f"a conflict is settled for 'poweroffice' or 'pms', not {winner!r}")
        mine = (ConflictRow.tenant == self.tenant, ConflictRow.id == conflict_id)
        with self._write() as conn:
            # Only a parked conflict is settled, in one statement, so two people
            # settling it at once cannot both win.
            row = conn.execute(
                update(ConflictRow)
                .where(*mine, ConflictRow.resolved == false())
                .values(winner=winner, resolved=True, resolved_at=self.now())
                .returning(*_CONFLICT_COLUMNS)
            ).first()
            if row is None:
                settled = conn.execute(select(*_CONFLICT_COLUMNS).where(*mine)).first()
        if row is not None:
            return ConflictRecord(*row)
        if settled is None:
            raise UnknownRecord(f"no conflict {conflict_id}")
        done = ConflictRecord(*settled)
        raise AlreadySettled(
            f"conflict {conflict_id} was already settled ({done.winner} won"
            f"{'' if done.resolved_at is None else ' at ' + done.resolved_at.isoformat()})",
            done,
        )

    # -- dashboard ---------------------------------------------------------

    def flow_counts(self) -> dict[str, FlowCounts]:
        """Per flow: links by state, open failures, parked conflicts and pending creates."""
        tenant = self.tenant
        links = self.link_counts()
        with self._read() as conn:
            failures = _count_by_flow(conn, FailureRow, tenant, FailureRow.resolved == false())
            conflicts = _count_by_flow(conn, ConflictRow, tenant, ConflictRow.resolved == false())
            pending = _count_by_flow(
                conn, PendingCreateRow, tenant, PendingCreateRow.state == "pending"
            )
        flows = sorted(set(links) | set(failures) | set(conflicts) | set(pending))
        return {
            flow: FlowCounts(
                links=links.get(flow, {}),
                open_failures=failures.get(flow, 0),
                parked_conflicts=conflicts.get(flow, 0),
                pending_creates=pending.get(flow, 0),
            )
            for flow in flows
        }


def _count_by_flow(conn: Connection, model: Any, tenant: str, condition: Any) -> dict[str, int]:
    stmt = (
        select(model.flow, func.count())
        .where(model.tenant == tenant, condition)
        .group_by(model.flow)
    )
    counts: dict[str, int] = dict(conn.execute(stmt).tuples().all())
    return counts
