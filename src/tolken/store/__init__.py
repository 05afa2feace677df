"""The store: links, shadows, cursors, pending creates, failures, conflicts, runs, history.

In fleet mode also the tenants, with their credentials encrypted at rest
(``store.tenant_registry(secret_key)``).

SQLAlchemy 2 with Alembic migrations shipped in the package and applied when
the store is opened. SQLite by default, PostgreSQL through the same code::

    store = open_store("sqlite:///tolken.db")
    with store.transaction():
        link = store.create_link("acme", "customers", "10001", "c-42")
        store.save_shadow(link.id, Shadow({"name": "Acme AS"}))
        store.add_history(link.id, "to_pms", "link", {}, "merge rule: organization_number")
"""

from tolken.store._tenants import (
    DuplicateTenant,
    Tenant,
    TenantRegistry,
    TenantState,
    TenantStatus,
    UnknownTenant,
)
from tolken.store.flowstate import FlowState
from tolken.store.records import (
    FLOW_PMS_RESOURCE,
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
    PendingCreate,
    PendingState,
    Run,
    RunStatus,
    Shadow,
    Side,
    UnknownRecord,
    Winner,
)
from tolken.store.repository import Store, open_store

__all__ = [
    "FLOW_PMS_RESOURCE",
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
    "Link",
    "LinkState",
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
    "UnknownRecord",
    "UnknownTenant",
    "Winner",
    "open_store",
]
