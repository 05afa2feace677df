"""Several PMS workspaces behind one reference PMS (DESIGN §7, "Several clients").

Every API key ``<api key>`` or ``<api key>-<name>`` (``sandbox-pms-key``,
``sandbox-pms-key-acme``) opens a workspace of its own: its own records,
changes feed (its own ``seq`` from 1), idempotency keys and webhooks. Each
workspace is one `Store`, so nothing of one can reach another:

* the base key keeps ``data_dir/pms.sqlite3``, the single-workspace file;
* every other key gets ``data_dir/pms-workspaces/<sha256 of the key>.sqlite3``
  (a temporary file without a data dir), opened on first use.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tolken.sandbox.pms.db import Store

__all__ = ["Workspaces"]

WORKSPACES_DIR = "pms-workspaces"
#: Called with a workspace's store and each feed item it commits.
ChangeHook = Callable[[Store, dict[str, Any]], None]


class Workspaces:
    """The workspaces of one reference PMS, opened on first use."""

    def __init__(self, data_dir: Path | None, api_key: str, on_change: ChangeHook) -> None:
        self._data_dir = data_dir
        self.api_key = api_key
        self._on_change = on_change
        self._lock = threading.Lock()
        self._open: dict[str, Store] = {}
        self.default = self.get(api_key)

    def is_key(self, key: str) -> bool:
        """The base API key, or the base key followed by ``-<name>``."""
        base = self.api_key
        return key == base or (key.startswith(base + "-") and len(key) > len(base) + 1)

    def _file(self, key: str) -> Path | None:
        if self._data_dir is None:
            return None
        if key == self.api_key:
            return self._data_dir / "pms.sqlite3"
        return (
            self._data_dir
            / WORKSPACES_DIR
            / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.sqlite3"
        )

    def get(self, key: str) -> Store:
        """The store of a valid key's workspace (opened on first use)."""
        if not self.is_key(key):
            raise ValueError(f"'{key}' is not an API key of this PMS.")
        store = self._open.get(key)
        if store is not None:
            return store
        with self._lock:
            store = self._open.get(key)
            if store is None:
                path = self._file(key)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                store = self._open_store(path)
                self._open[key] = store
        return store

    def _open_store(self, path: Path | None) -> Store:
        store = Store(path)
        hook = self._on_change
        store.on_change(lambda item: hook(store, item))
        return store

    def reset(self, key: str | None) -> None:
        """Forget one workspace's records, keys and webhooks, or every workspace's."""
        if key is not None:
            self.get(key).reset()
            return
        with self._lock:
            stores = list(self._open.values())
            known = {s.path for s in stores}
            folder = None if self._data_dir is None else self._data_dir / WORKSPACES_DIR
            if folder is not None and folder.is_dir():
                # Workspaces of an earlier run that nobody has opened yet.
                for path in sorted(folder.glob("*.sqlite3")):
                    if path not in known:
                        stale = Store(path)
                        stale.reset()
                        stale.close()
        for store in stores:
            store.reset()
