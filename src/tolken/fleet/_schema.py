"""procrastinate's tables in the store's database: applied once, by whoever opens the fleet first.

:func:`ensure_job_schema` runs each time a fleet is opened (``tolken worker``,
``tolken tenants …``, the fleet's ``serve``), right after the store's own
Alembic migrations. Under a PostgreSQL advisory lock it looks for
``procrastinate_jobs`` and, when it is missing, applies the schema that the
installed procrastinate ships (``procrastinate.schema.SchemaManager``), and
notes its version in ``store_meta``. A schema that is there already is left
alone, so opening a fleet twice, or fifty workers starting together, applies it
exactly once. When the noted version differs from the installed procrastinate
(tolken was upgraded with a newer procrastinate), a warning says to apply
procrastinate's migrations (see ``docs/operations.md``).
"""

from __future__ import annotations

import importlib.metadata

import structlog
from procrastinate.schema import SchemaManager
from sqlalchemy import text

from tolken.store import Store

__all__ = ["SCHEMA_VERSION_KEY", "ensure_job_schema"]

SCHEMA_VERSION_KEY = "procrastinate.schema_version"
_LOCK_KEY = 0x70_72_63_73  # "prcs": any constant every tolken process shares

_log = structlog.get_logger("tolken.fleet")


def ensure_job_schema(store: Store) -> None:
    """Apply procrastinate's schema to the store's database unless it is there already."""
    version = importlib.metadata.version("procrastinate")
    with store.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        present = conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        noted = conn.execute(
            text("SELECT value FROM store_meta WHERE key = :key"), {"key": SCHEMA_VERSION_KEY}
        ).scalar()
        if present is None:
            # Through psycopg itself, without parameters: the whole script as one query.
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute(SchemaManager.get_schema())
            conn.execute(
                text("DELETE FROM store_meta WHERE key = :key"), {"key": SCHEMA_VERSION_KEY}
            )
            conn.execute(
                text("INSERT INTO store_meta (key, value) VALUES (:key, :value)"),
                {"key": SCHEMA_VERSION_KEY, "value": version},
            )
            _log.info("job queue schema applied", procrastinate=version)
        elif noted is not None and noted != version:
            _log.warning(
                "the job queue schema was applied by another procrastinate version: "
                "apply its migrations (docs/operations.md)",
                schema=noted,
                installed=version,
            )
