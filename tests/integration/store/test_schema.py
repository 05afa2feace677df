"""The store's schema: migrations from the package, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from tolken.errors import ConfigError, Fatal, Unreachable
from tolken.store import open_store
from tolken.store._db import make_engine
from tolken.store._migrate import (
    alembic_config,
    current_revision,
    head_revision,
    schema_diff,
    shipped_head,
)

TABLES = {
    "links",
    "shadows",
    "cursors",
    "pending_creates",
    "failures",
    "conflicts",
    "runs",
    "history",
    "flow_versions",
}


def test_migrations_create_every_table_from_empty(store_url: str) -> None:
    """Opening a store on an empty database creates every table at the newest revision."""
    with open_store(store_url) as store:
        tables = set(inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            revision = current_revision(conn)
    assert tables >= TABLES
    assert revision == head_revision()


def test_the_head_read_from_the_migration_files_is_alembic_s() -> None:
    """upgrade's quick check reads the head without Alembic; it must be Alembic's head."""
    assert shipped_head() == head_revision()


def test_a_store_at_head_opens_without_loading_alembic(tmp_path: Path) -> None:
    """Alembic (a tenth of a second of imports) loads only when the schema must move."""
    url = f"sqlite:///{tmp_path / 'tolken.db'}"
    open_store(url).close()  # migrated here
    probe = (
        "import sys; from tolken.store import open_store; "
        f"open_store({url!r}).close(); print('alembic' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "False"


def test_opening_twice_is_idempotent_and_keeps_data(store_url: str) -> None:
    """Re-opening a migrated store changes nothing and loses nothing."""
    with open_store(store_url) as store:
        store.for_tenant("acme").create_link("customers", "10001", "c-1")
    with open_store(store_url) as again, open_store(store_url) as third:
        assert again.for_tenant("acme").get_link_by_po("customers", "10001") is not None
        assert len(third.for_tenant("acme").list_links()) == 1


def test_models_match_migrations(store_url: str) -> None:
    """Alembic autogenerate finds no difference between the models and the migrated schema."""
    with open_store(store_url) as store:
        assert schema_diff(store.engine) == []


def test_migrations_downgrade_to_empty_and_up_again(store_url: str) -> None:
    """Every migration can be undone, and the schema comes back identical."""
    with open_store(store_url) as store:
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(inspect(store.engine).get_table_names()) & TABLES == set()
    with open_store(store_url) as store:
        assert schema_diff(store.engine) == []


def test_store_from_a_newer_tolken_is_refused(store_url: str) -> None:
    """A store migrated by a newer tolken is not touched; the error says to upgrade."""
    with open_store(store_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(Fatal, match="newer than this tolken knows"):
        open_store(store_url)


def test_workers_starting_together_migrate_once(store_url: str) -> None:
    """Several processes opening a fresh store at the same moment all succeed."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            open_store(store_url).close()
        except BaseException as exc:  # noqa: BLE001 - a thread's error; the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_store(store_url) as store, store.engine.connect() as conn:
        assert current_revision(conn) == head_revision()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    """The embedded SQLite file uses WAL, enforces foreign keys and waits on a busy lock."""
    with open_store(f"sqlite:///{tmp_path / 'tolken.db'}") as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000


def test_sqlite_file_is_created_relative_to_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default ``sqlite:///tolken.db`` makes ``tolken.db`` in the current directory."""
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///tolken.db").close()
    assert (tmp_path / "tolken.db").exists()


def test_unsupported_database_is_a_config_error() -> None:
    """A URL for a database tolken does not support names the ``store`` key."""
    with pytest.raises(ConfigError) as info:
        make_engine("mysql://user:pw@localhost/db")
    assert info.value.key == "store"
    assert "unsupported database" in str(info.value)


def test_malformed_url_is_a_config_error() -> None:
    """A string that is not a database URL is refused as configuration."""
    with pytest.raises(ConfigError):
        open_store("not a url")


def test_unreachable_postgres_is_reported_without_password() -> None:
    """A PostgreSQL server that does not answer raises Unreachable, and no password leaks."""
    with pytest.raises(Unreachable) as info:
        open_store("postgresql+psycopg://tolken:s3cret-pw@127.0.0.1:1/none?connect_timeout=2")
    assert "s3cret-pw" not in str(info.value)
    assert str(info.value).startswith("store: cannot open the store")


@pytest.mark.postgres
def test_losing_postgres_mid_transaction_is_reported_and_recovered(postgres_url: str) -> None:
    """A dropped database connection raises Unreachable; nothing half-written stays behind."""
    admin = create_engine(postgres_url)
    try:
        with open_store(postgres_url) as db:
            store = db.for_tenant("acme")

            def write_while_the_server_drops_us() -> None:
                with store.transaction():
                    store.create_link("customers", "1", "a")
                    current = db._current()  # noqa: SLF001 - the connection this transaction holds
                    assert current is not None
                    pid = current.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                    with admin.begin() as conn:
                        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    store.create_link("customers", "2", "b")

            with pytest.raises(Unreachable, match="lost the store"):
                write_while_the_server_drops_us()
            assert store.list_links() == []
            store.create_link("customers", "3", "c")
            assert len(store.list_links()) == 1
    finally:
        admin.dispose()
