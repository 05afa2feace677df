"""Several PowerOffice clients behind one simulator (DESIGN §7, "Several clients").

Every client key ``sandbox-client-key`` or ``sandbox-client-key-<name>`` is a
client of its own, as each PowerOffice Go client is its own company with its
own ledger: its own departments, customers and projects, its own customer
numbers from 10000, its own ``ExternalImportReference`` namespace. Each client
is one `Store`, so no query can reach another client's rows:

* ``sandbox-client-key`` keeps ``data_dir/poweroffice.sqlite3``, the file the
  single-client simulator always used (its data and ids are unchanged);
* every other key gets ``data_dir/poweroffice-clients/<sha256 of the key>.sqlite3``
  (in memory without a data dir), opened on first use. Its ids start
  ``ordinal × 100,000,000`` higher, so ids never coincide across clients.

The registry of clients (key, ordinal, name, organisation number) is a table
in the default client's file. Onboarding (`onboarding`) registers new keys
with the name and organisation number the person consented for; any other
valid key registers itself on first use with a generated name. A reset
empties clients' data but keeps the registry: keys stay valid and onboarded
clients keep their names. Each open
client costs one SQLite connection (three file descriptors with WAL).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from tolken.sandbox.credentials import CLIENT_KEY
from tolken.sandbox.poweroffice.db import Store
from tolken.sandbox.poweroffice.resources import Resources

__all__ = ["Client", "Clients", "is_client_key"]

CLIENTS_DIR = "poweroffice-clients"
ID_STRIDE = 100_000_000
_REGISTRY = (
    "CREATE TABLE IF NOT EXISTS sandbox_clients (key TEXT PRIMARY KEY,"
    " ordinal INTEGER NOT NULL UNIQUE, name TEXT NOT NULL, organization_number TEXT)"
)


def is_client_key(key: str) -> bool:
    """``sandbox-client-key`` or ``sandbox-client-key-<name>`` (a non-empty name)."""
    return key == CLIENT_KEY or (
        key.startswith(CLIENT_KEY + "-") and len(key) > len(CLIENT_KEY) + 1
    )


@dataclass(frozen=True)
class Client:
    """One PowerOffice client: its key, registry entry and data."""

    key: str
    ordinal: int
    name: str
    organization_number: str | None
    store: Store
    resources: Resources

    @property
    def client_id(self) -> str:
        """A stable id of the client (a UUID derived from its key)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tolken-sandbox:{self.key}"))


class Clients:
    """The clients of one simulator, opened on first use."""

    def __init__(self, data_dir: Path | None) -> None:
        self._data_dir = data_dir
        default = Store(None if data_dir is None else data_dir / "poweroffice.sqlite3")
        with default.transaction() as conn:
            conn.execute(_REGISTRY)
        self._registry = default
        self._lock = threading.Lock()
        self._open: dict[str, Client] = {}
        self.default = self._make(CLIENT_KEY, 0, "Sandbox client", None, default)
        self._register(CLIENT_KEY, "Sandbox client", None)

    def _make(self, key: str, ordinal: int, name: str, org: str | None, store: Store) -> Client:
        client = Client(key, ordinal, name, org, store, Resources(store))
        self._open[key] = client
        return client

    def _register(self, key: str, name: str, org: str | None) -> tuple[int, str, str | None]:
        """The registry entry of ``key``, created when missing."""
        with self._registry.transaction() as conn:
            row = conn.execute(
                "SELECT ordinal, name, organization_number FROM sandbox_clients WHERE key = ?",
                (key,),
            ).fetchone()
            if row is not None:
                return int(row[0]), str(row[1]), row[2]
            if key == CLIENT_KEY:
                ordinal = 0
            else:
                top = conn.execute("SELECT MAX(ordinal) FROM sandbox_clients").fetchone()[0]
                ordinal = max(1, (top or 0) + 1)
            conn.execute(
                "INSERT INTO sandbox_clients (key, ordinal, name, organization_number)"
                " VALUES (?, ?, ?, ?)",
                (key, ordinal, name, org),
            )
        return ordinal, name, org

    def get(self, key: str) -> Client:
        """The client of a valid key (opened, and registered, on first use)."""
        if not is_client_key(key):
            raise ValueError(f"'{key}' is not a sandbox client key.")
        client = self._open.get(key)
        if client is not None:
            return client
        with self._lock:
            client = self._open.get(key)
            if client is None:
                suffix = key.removeprefix(CLIENT_KEY + "-")
                ordinal, name, org = self._register(key, f"Sandbox client {suffix}", None)
                client = self._make(key, ordinal, name, org, self._open_store(key, ordinal))
        return client

    def _open_store(self, key: str, ordinal: int) -> Store:
        path = None
        if self._data_dir is not None:
            folder = self._data_dir / CLIENTS_DIR
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.sqlite3"
        return Store(path, id_offset=ordinal * ID_STRIDE)

    def create(self, name: str, organization_number: str | None) -> Client:
        """A new client (onboarding): a fresh key, registered with its name and org number."""
        key = f"{CLIENT_KEY}-{uuid.uuid4()}"
        with self._lock:
            ordinal, name, org = self._register(key, name, organization_number)
            return self._make(key, ordinal, name, org, self._open_store(key, ordinal))

    def every(self) -> list[Client]:
        """Every client opened so far and every registered one."""
        keys = [k for (k,) in self._registry.query("SELECT key FROM sandbox_clients")]
        return [self.get(key) for key in keys]

    def reset(self, key: str | None) -> None:
        """Empty one client's data, or every client's (they stay registered)."""
        for client in [self.get(key)] if key is not None else self.every():
            client.store.clear()

    def close(self) -> None:
        """Close every open store."""
        with self._lock:
            for client in self._open.values():
                client.store.close()
