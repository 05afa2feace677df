"""The store: links, shadows, cursors, pending creates, failures, conflicts, runs, history.

SQLAlchemy 2 with Alembic migrations shipped in the package and applied when
the store is opened. SQLite by default, PostgreSQL through the same code.
In fleet mode the store also keeps the tenants, with their credentials
encrypted at rest (``store.tenant_registry(secret_key)``).
Every tenant-keyed read and write goes through the tenant's view::

    store = open_store("sqlite:///tolken.db")
    acme = store.for_tenant("acme")
    with acme.transaction():
        link = acme.create_link("customers", "10001", "c-42")
        acme.save_shadow(link.id, Shadow({"name": "Acme AS"}))
        acme.add_history(link.id, "to_pms", "link", {}, "merge rule: organization_number")
"""

from tolken.store._flowstate import FlowState
from tolken.store._jobruns import JobKind, JobOutcome, JobReason, JobRun, JobRunLog
from tolken.store._records import (
    FLOW_PMS_RESOURCE,
    AlreadySettled,
    ConflictRecord,
    Direction,
    DuplicateLink,
    DuplicatePendingCreate,
    Failure,
    FlowCounts,
    FlowId,
    HistoryEntry,
    Link,
    LinkState,
    NewLink,
    OpenWork,
    PendingCreate,
    PendingState,
    Run,
    RunStatus,
    Shadow,
    Side,
    UnknownRecord,
    Winner,
)
from tolken.store._repository import Store, TenantStore, open_store
from tolken.store._tenants import (
    DuplicateTenant,
    Tenant,
    TenantRegistry,
    TenantState,
    TenantStatus,
    UnknownTenant,
)

__all__ = [
    "FLOW_PMS_RESOURCE",
    "AlreadySettled",
    "ConflictRecord",
    "Direction",
    "DuplicateLink",
    "DuplicatePendingCreate",
    "DuplicateTenant",
    "Failure",
    "FlowCounts",
    "FlowId",
    "FlowState",
    "HistoryEntry",
    "JobKind",
    "JobOutcome",
    "JobReason",
    "JobRun",
    "JobRunLog",
    "Link",
    "LinkState",
    "NewLink",
    "OpenWork",
    "PendingCreate",
    "PendingState",
    "Run",
    "RunStatus",
    "Shadow",
    "Side",
    "Store",
    "Tenant",
    "TenantRegistry",
    "TenantState",
    "TenantStatus",
    "TenantStore",
    "UnknownRecord",
    "UnknownTenant",
    "Winner",
    "open_store",
]
