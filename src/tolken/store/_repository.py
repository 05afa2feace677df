"""The :class:`Store`, shared by every part, and its :class:`TenantStore` views, one per tenant."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, false, func, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DatabaseError, DBAPIError, OperationalError
from sqlalchemy.orm import configure_mappers

from tolken._closing import Closeable
from tolken.store._base import Clock, StoreBase, utcnow
from tolken.store._db import make_engine, open_failure
from tolken.store._issues import IssueRepository
from tolken.store._jobruns import JobRunRepository
from tolken.store._migrate import upgrade
from tolken.store._models import ConflictRow, FailureRow, LinkRow, PendingCreateRow, RunRow
from tolken.store._ops import OpsRepository
from tolken.store._records import FlowCounts
from tolken.store._tenants import TenantRepository
from tolken.store._webhooks import WebhookRepository

__all__ = ["FleetView", "Store", "TenantStore", "open_store"]


class TenantStore(IssueRepository, OpsRepository, WebhookRepository):
    """One tenant's links, shadows, cursors, pending creates, failures, conflicts, runs, history.

    And its webhook deliveries taken in (the receiver's replay cache).

    Made by :meth:`Store.for_tenant`. No method takes a tenant: every read and
    write is about ``tenant``, and an id of another tenant's row (a link, a
    conflict, a failure, a run, a pending create's key) is not found. Calls are
    thread-safe; each runs in its own transaction unless made inside
    ``with store.transaction():`` (of this view or of its store: they share it).
    """


class FleetView(StoreBase):
    """Read-only figures of every tenant in a few queries, where asking each view would be N.

    Counts and times only, never a tenant's records: the fleet's tenants page
    and ``/metrics`` read a thousand tenants in well under a second this way.
    """

    def flow_counts_by_tenant(self) -> dict[str, dict[str, FlowCounts]]:
        """Every tenant's :meth:`TenantStore.flow_counts` at once, in four queries.

        For the fleet's tenants page and metrics, which would otherwise ask
        four times per tenant.
        """
        found: dict[str, dict[str, dict[str, Any]]] = {}

        def count(model: Any, *where: Any, by: Any = None) -> None:
            columns = [model.tenant, model.flow] + ([by] if by is not None else [])
            stmt = select(*columns, func.count()).where(*where).group_by(*columns)
            for row in conn.execute(stmt):
                tenant, flow, *rest = row
                slot = found.setdefault(tenant, {}).setdefault(flow, {"links": {}})
                if by is not None:
                    slot["links"][rest[0]] = rest[1]
                else:
                    slot[model.__tablename__] = rest[0]

        with self._read() as conn:
            count(LinkRow, by=LinkRow.state)
            count(FailureRow, FailureRow.resolved == false())
            count(ConflictRow, ConflictRow.resolved == false())
            count(PendingCreateRow, PendingCreateRow.state == "pending")
        return {
            tenant: {
                flow: FlowCounts(
                    links=c["links"],
                    open_failures=c.get(FailureRow.__tablename__, 0),
                    parked_conflicts=c.get(ConflictRow.__tablename__, 0),
                    pending_creates=c.get(PendingCreateRow.__tablename__, 0),
                )
                for flow, c in sorted(flows.items())
            }
            for tenant, flows in found.items()
        }

    def oldest_failures_by_tenant(self) -> dict[tuple[str, str], datetime]:
        """``{(tenant, flow): first sight}`` of each tenant's oldest open failure per flow."""
        stmt = (
            select(FailureRow.tenant, FailureRow.flow, func.min(FailureRow.first_seen))
            .where(FailureRow.resolved == false())
            .group_by(FailureRow.tenant, FailureRow.flow)
        )
        with self._read() as conn:
            return {(t, f): at for t, f, at in conn.execute(stmt)}

    def last_successes_by_tenant(self) -> dict[str, datetime]:
        """``{tenant: start}`` of each tenant's newest successful run (a cycle or a reconcile)."""
        stmt = (
            select(RunRow.tenant, func.max(RunRow.started_at))
            .where(RunRow.status == "ok")
            .group_by(RunRow.tenant)
        )
        with self._read() as conn:
            return {str(t): at for t, at in conn.execute(stmt)}


class Store(TenantRepository, JobRunRepository, Closeable):
    """The database every part shares (engine, CLI, dashboard): connections and transactions.

    It reads and writes no tenant's rows itself: :meth:`for_tenant` gives the
    view that does, so one store serves many PowerOffice clients and no caller
    can forget to say which one.
    """

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        super().__init__(engine, clock)
        # Every query selects the models' columns, which needs the models' mappers configured:
        # SQLAlchemy does that once per process, on the first such query. Done here, with the
        # store's opening, it is set-up like the imports, not part of the first sync cycle
        # (about 10 ms of CPU, a fifth of an idle cycle's).
        configure_mappers()
        self._views: dict[str, TenantStore] = {}
        self._views_lock = threading.Lock()

    def for_tenant(self, tenant: str) -> TenantStore:
        """The view of one tenant's rows (the same view each time, with its caches)."""
        with self._views_lock:
            view = self._views.get(tenant)
            if view is None:
                view = self._views[tenant] = TenantStore(self, tenant)
            return view

    def fleet_view(self) -> FleetView:
        """Every tenant's figures at once, read-only (the fleet's tenants page and metrics)."""
        return FleetView(self.engine, self._clock)

    def tenants(self) -> list[str]:
        """Every tenant the store has seen (links or runs), sorted."""
        stmt = select(LinkRow.tenant).union(select(RunRow.tenant))
        with self._read() as conn:
            return sorted(str(t) for t in conn.execute(stmt).scalars())


def open_store(url: str | URL | Engine, *, clock: Clock = utcnow, migrate: bool = True) -> Store:
    """Open (and by default migrate) the store at ``url``.

    ``sqlite:///tolken.db`` (the default; WAL, foreign keys, busy timeout) or
    ``postgresql+psycopg://user:pass@host/db``. Raises :class:`tolken.errors.ConfigError`
    for a malformed or unsupported URL or a SQLite file that cannot be opened
    (naming its path), and :class:`tolken.errors.Unreachable` when the database
    server cannot be reached.
    """
    owned = not isinstance(url, Engine)
    engine = url if isinstance(url, Engine) else make_engine(url)
    if migrate:
        try:
            try:
                upgrade(engine)
            except DBAPIError as exc:
                # Not reachable, or not a database file; other errors are bugs to show whole.
                if not isinstance(exc, OperationalError) and type(exc) is not DatabaseError:
                    raise
                raise open_failure(engine.url, exc) from None
        except BaseException:
            if owned:  # a caller's engine is the caller's to dispose
                engine.dispose()
            raise
    return Store(engine, clock)
