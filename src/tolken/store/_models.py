"""The store's tables as typed SQLAlchemy 2 declarative models.

These models are the source of truth for the schema; the Alembic migrations in
``migrations/versions`` must produce exactly the same tables (a test compares
them with autogenerate). The repository works on these tables with Core
statements rather than ORM objects, because the engine handles plain values
and bulk loads of 100,000 links must stay cheap.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from tolken.vocabulary import ConflictPolicy

__all__ = [
    "Base",
    "ConflictRow",
    "CursorRow",
    "FailureRow",
    "FlowVersionRow",
    "HistoryRow",
    "JobRunRow",
    "LinkRow",
    "PendingCreateRow",
    "RunRow",
    "ShadowRow",
    "StoreMetaRow",
    "TenantRow",
    "UTCDateTime",
    "WebhookDeliveryRow",
    "aware_utc",
]

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TENANT = 100  # length of tenant ids
RECORD_ID = 200  # length of remote record ids (PowerOffice ids are integers, PMS ids strings)


def aware_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive time is refused (ValueError): it is ambiguous, and a sync
    engine comparing modification times cannot guess."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    SQLite has no timezone-aware type, so values are stored as naive UTC there;
    PostgreSQL stores ``timestamptz``. Naive input is refused: a naive time is
    ambiguous and a sync engine comparing modification times cannot guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = aware_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


FLOWS = ("departments", "customers", "projects")
PMS_RESOURCES = ("customers", "projects")
SIDES = ("poweroffice", "pms")
LINK_STATES = ("active", "source-deleted", "pms-deleted")
PENDING_STATES = ("pending", "done", "abandoned")
WINNERS = ("poweroffice", "pms", "parked")
DIRECTIONS = ("to_pms", "to_poweroffice")
RUN_STATUSES = ("running", "ok", "failed", "stopped")
TENANT_STATES = ("idle", "queued", "syncing", "error")
CONFLICT_POLICIES: tuple[str, ...] = get_args(ConflictPolicy)


# SQLite would otherwise hand a deleted row's id to the next insert; ids that
# come back would make old history, logs and dashboard links point at the wrong row.
_NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    """Declarative base with the naming convention and JSON type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class LinkRow(Base):
    """A permanent pairing of one PowerOffice record with one PMS record.

    ``pms_resource`` is derived from the flow (departments and customers both
    live in PMS customers), so a PMS record can be linked once across flows.
    """

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("tenant", "flow", "poweroffice_id"),
        UniqueConstraint("tenant", "pms_resource", "pms_id"),
        CheckConstraint(_in("flow", FLOWS), name="flow"),
        CheckConstraint(_in("state", LINK_STATES), name="state"),
        CheckConstraint(
            "(flow = 'projects' AND pms_resource = 'projects') OR "
            "(flow IN ('departments', 'customers') AND pms_resource = 'customers')",
            name="pms_resource",
        ),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT))
    flow: Mapped[str] = mapped_column(String(32))
    pms_resource: Mapped[str] = mapped_column(String(32))
    poweroffice_id: Mapped[str] = mapped_column(String(RECORD_ID))
    pms_id: Mapped[str] = mapped_column(String(RECORD_ID))
    state: Mapped[str] = mapped_column(String(32), server_default=text("'active'"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ShadowRow(Base):
    """The last synchronised value of every mapped field of one link, and each side's state."""

    __tablename__ = "shadows"

    link_id: Mapped[int] = mapped_column(
        ForeignKey("links.id", ondelete="CASCADE"), primary_key=True
    )
    fields: Mapped[dict[str, Any]]
    poweroffice_version: Mapped[int | None] = mapped_column(BigInteger)
    poweroffice_hash: Mapped[str | None] = mapped_column(String(128))
    poweroffice_changed_at: Mapped[datetime | None]
    pms_version: Mapped[int | None] = mapped_column(BigInteger)
    pms_hash: Mapped[str | None] = mapped_column(String(128))
    pms_changed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class CursorRow(Base):
    """Change-capture position per tenant, system and resource."""

    __tablename__ = "cursors"

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class PendingCreateRow(Base):
    """A create committed before its POST, so a crash can be recovered by idempotency key.

    At most one create per source record is pending at a time (partial unique
    index), which also stops two workers from creating the same record.
    """

    __tablename__ = "pending_creates"
    __table_args__ = (
        CheckConstraint(_in("flow", FLOWS), name="flow"),
        CheckConstraint(_in("target", SIDES), name="target"),
        CheckConstraint(_in("state", PENDING_STATES), name="state"),
        Index(
            "uq_pending_creates_open_source",
            "tenant",
            "flow",
            "target",
            "source_id",
            unique=True,
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
        Index("ix_pending_creates_tenant_state", "tenant", "state"),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT))
    flow: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(RECORD_ID))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(32), server_default=text("'pending'"))
    created_id: Mapped[str | None] = mapped_column(String(RECORD_ID))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class FailureRow(Base):
    """A parked record: the remote message verbatim, attempts and the next retry time."""

    __tablename__ = "failures"
    __table_args__ = (
        CheckConstraint(_in("flow", FLOWS), name="flow"),
        CheckConstraint(_in("side", SIDES), name="side"),
        # One open failure per record; resolved ones are kept as a record of what happened.
        Index(
            "uq_failures_open_record",
            "tenant",
            "flow",
            "side",
            "record_id",
            unique=True,
            sqlite_where=text("resolved = 0"),
            postgresql_where=text("NOT resolved"),
        ),
        Index(
            "ix_failures_tenant_resolved_next_attempt_at", "tenant", "resolved", "next_attempt_at"
        ),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT))
    flow: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(RECORD_ID))
    error_class: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any] | None]
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    resolved: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    resolved_at: Mapped[datetime | None]


class RunRow(Base):
    """One sync cycle of one tenant with its per-flow counts and request counts."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index("ix_runs_tenant_started_at", "tenant", "started_at"),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(32), server_default=text("'running'"))
    counts: Mapped[dict[str, Any]]
    requests: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)


class ConflictRow(Base):
    """A field changed on both sides: both values, the shadow, the policy and the winner."""

    __tablename__ = "conflicts"
    __table_args__ = (
        CheckConstraint(_in("flow", FLOWS), name="flow"),
        CheckConstraint(_in("winner", WINNERS), name="winner"),
        Index("ix_conflicts_tenant_resolved", "tenant", "resolved"),
        Index("ix_conflicts_link_id", "link_id"),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT))
    flow: Mapped[str] = mapped_column(String(32))
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(200))
    poweroffice_value: Mapped[Any] = mapped_column(JSON)
    pms_value: Mapped[Any] = mapped_column(JSON)
    shadow_value: Mapped[Any] = mapped_column(JSON)
    policy: Mapped[str] = mapped_column(String(32))
    winner: Mapped[str] = mapped_column(String(32))
    resolved: Mapped[bool] = mapped_column(Boolean)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class HistoryRow(Base):
    """What tolken wrote where, and why, for one link."""

    __tablename__ = "history"
    __table_args__ = (
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        Index("ix_history_link_id_at", "link_id", "at"),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    direction: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    fields: Mapped[dict[str, Any]]
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))


class FlowVersionRow(Base):
    """A counter per tenant and flow, bumped by every write to its links or shadows.

    A store keeps the last loaded flow state in memory and reloads it only when
    this counter moved, so an idle cycle over 100,000 links costs one lookup.
    A counter (not a timestamp) stays correct with several workers whose clocks differ.
    """

    __tablename__ = "flow_versions"
    __table_args__ = (CheckConstraint(_in("flow", FLOWS), name="flow"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    flow: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class WebhookDeliveryRow(Base):
    """A PMS webhook delivery already taken in, kept while its timestamp can still verify.

    The receiver refuses a delivery whose signature is here (a replay), also
    after a restart; rows whose ``sent_at`` left the five-minute window are pruned.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_tenant_sent_at", "tenant", "sent_at"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    signature: Mapped[str] = mapped_column(String(100), primary_key=True)
    sent_at: Mapped[int] = mapped_column(BigInteger)  # the delivery's X-PMS-Timestamp
    received_at: Mapped[datetime]


class TenantRow(Base):
    """One tenant of a fleet: its settings, its credentials (encrypted) and its sync state.

    ``id`` is the tenant every other table is keyed by. The ``*_token`` columns
    hold Fernet tokens, never the secrets themselves. ``paused`` is kept apart
    from ``state`` so a worker finishing a job cannot undo a pause.
    """

    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint(_in("state", TENANT_STATES), name="state"),
        CheckConstraint(
            "conflict_policy IS NULL OR " + _in("conflict_policy", CONFLICT_POLICIES),
            name="conflict_policy",
        ),
        Index("ix_tenants_paused_next_run_at", "paused", "next_run_at"),
    )

    id: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    poweroffice_client_key_token: Mapped[str] = mapped_column(Text)
    pms_api_key_token: Mapped[str] = mapped_column(Text)
    webhook_secret_token: Mapped[str | None] = mapped_column(Text)
    pms_base_url: Mapped[str | None] = mapped_column(Text)
    interval_seconds: Mapped[float | None]
    conflict_policy: Mapped[str | None] = mapped_column(String(32))
    paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    state: Mapped[str] = mapped_column(String(32), server_default=text("'idle'"))
    last_run_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    failures_in_a_row: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StoreMetaRow(Base):
    """Facts about this installation by name: the KDF salt and key check of the tenants' key."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


JOB_REASONS = ("webhook", "scheduled", "resync", "backfill")
JOB_KINDS = ("cycle", "reconcile")
JOB_OUTCOMES = ("running", "ok", "error", "stopped")


class JobRunRow(Base):
    """One fleet job of one tenant: why it ran, how long, its requests and 429s, how it ended.

    Written by the worker (``tolken.fleet``), read by the fleet dashboard and ``/metrics``.
    """

    __tablename__ = "job_runs"
    __table_args__ = (
        CheckConstraint(_in("reason", JOB_REASONS), name="reason"),
        CheckConstraint(_in("kind", JOB_KINDS), name="kind"),
        CheckConstraint(_in("outcome", JOB_OUTCOMES), name="outcome"),
        Index("ix_job_runs_tenant_started_at", "tenant", "started_at"),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16), server_default=text("'running'"))
    duration_seconds: Mapped[float | None]
    poweroffice_requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    pms_requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    throttled: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    changes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    run_id: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
