"""Schema migrations, run from the package: no ``alembic.ini`` is needed by users.

:func:`upgrade` is called when a store is opened. It is cheap when the schema
is current (one query), and safe when several workers start together: on
PostgreSQL an advisory lock serialises them, on SQLite ``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from tolken.errors import Fatal

if TYPE_CHECKING:  # Alembic loads only when the schema is not at head (or for its tools)
    from alembic.config import Config

__all__ = [
    "alembic_config",
    "current_revision",
    "head_revision",
    "schema_diff",
    "shipped_head",
    "upgrade",
]

MIGRATIONS = Path(__file__).parent / "migrations"
_VERSION_TABLE = "alembic_version"
_REVISION = re.compile(r"^(down_revision|revision)\b[^=]*=\s*[\"']?([\w]+)", re.MULTILINE)

# Any constant works; it only has to be the same for every tolken process.
_PG_LOCK_KEY = 0x70_6C_6B_6E  # "tlkn"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this version of tolken ships (as Alembic reads it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("no migrations found")
    return head


def shipped_head() -> str | None:
    """The newest migration shipped, read from the files' ``revision`` and ``down_revision``
    lines without Alembic (None when that reading is not clear-cut: then Alembic decides)."""
    revisions: set[str] = set()
    replaced: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {
            name: value
            for name, value in _REVISION.findall(path.read_text(encoding="utf-8"))
            if value != "None"
        }
        if "revision" not in found:
            return None
        revisions.add(found["revision"])
        if "down_revision" in found:
            replaced.add(found["down_revision"])
    heads = revisions - replaced
    return heads.pop() if len(heads) == 1 else None


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _stamped(connection: Connection) -> set[str]:
    """The revisions in Alembic's version table, read with a plain query (none without one)."""
    if not inspect(connection).has_table(_VERSION_TABLE):
        return set()
    rows = connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}"))
    return {str(row[0]) for row in rows}


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema; do nothing when it is already there.

    A store already at head is recognised with one plain query, without loading Alembic.
    """
    shipped = shipped_head()
    with engine.connect() as conn:
        if shipped is not None and _stamped(conn) == {shipped}:
            return
    from alembic import command

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
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def schema_diff(engine: Engine) -> list[object]:
    """Differences between the models and the database (empty when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from tolken.store._models import Base

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff: list[object] = compare_metadata(context, Base.metadata)
        return diff
