"""The store: links, shadows, cursors, pending creates, failures, conflicts, runs, history.

SQLAlchemy 2 with Alembic migrations shipped in the package and applied when
the store is opened. SQLite by default, PostgreSQL through the same code::

    store = open_store("sqlite:///tolken.db")
    with store.transaction():
        link = store.create_link("acme", "customers", "10001", "c-42")
        store.save_shadow(link.id, Shadow({"name": "Acme AS"}))
        store.add_history(link.id, "to_pms", "link", {}, "merge rule: organization_number")
"""

from tolken.store._flowstate import FlowState
from tolken.store._records import (
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
from tolken.store._repository import Store, open_store

__all__ = [
    "FLOW_PMS_RESOURCE",
    "ConflictRecord",
    "Direction",
    "DuplicateLink",
    "DuplicatePendingCreate",
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
    "UnknownRecord",
    "Winner",
    "open_store",
]
