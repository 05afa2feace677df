"""Schema migrations, run from the package: no ``alembic.ini`` is needed by users.

:func:`upgrade` is called when a store is opened. It is cheap when the schema
is current (one query), and safe when several workers start together: on
PostgreSQL an advisory lock serialises them, on SQLite ``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, text

from tolken.errors import Fatal
from tolken.store._models import Base

__all__ = ["alembic_config", "current_revision", "head_revision", "schema_diff", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"

# Any constant works; it only has to be the same for every tolken process.
_PG_LOCK_KEY = 0x70_6C_6B_6E  # "tlkn"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this version of tolken ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("no migrations found")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema; do nothing when it is already there."""
    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held until commit; the loser of a race waits, then finds nothing to do.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        current = current_revision(conn)
        if current == head:
            return
        if current is not None and not _known(current):
            raise Fatal(
                f"the store is at schema revision {current!r}, newer than this tolken knows "
                f"(newest {head!r}): upgrade tolken",
                system="store",
            )
        command.upgrade(alembic_config(conn), "head")


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def schema_diff(engine: Engine) -> list[object]:
    """Differences between the models and the database (empty when they agree)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff: list[object] = compare_metadata(context, Base.metadata)
        return diff
