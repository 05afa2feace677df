"""A pass-through view of the store that reports each new link, for the demo's progress bars.

The engine reports progress per flow only; the demo wants its bars to move per
record. Every record the first sync settles ends in a new link (a create makes
the PMS record and then links it; a match links at once), so counting
``create_link`` calls counts records done, without the engine knowing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from tolken.store import Link, Store, TenantStore

__all__ = ["LinkWatchingStore"]


class LinkWatchingStore:
    """Forwards everything to ``store``; calls ``on_link(flow)`` after each link is made.

    The links are made through the tenant views it hands out (:meth:`for_tenant`).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.on_link: Callable[[str], None] | None = None

    def as_store(self) -> Store:
        """This view, typed as the store it stands for (it forwards every attribute)."""
        return cast(Store, self)

    def for_tenant(self, tenant: str) -> TenantStore:
        """The store's view of ``tenant``, watched the same way."""
        return cast(TenantStore, _WatchedTenant(self, self._store.for_tenant(tenant)))

    def notify(self, flow: str, links: int) -> None:
        """Report ``links`` new links of ``flow``."""
        if self.on_link is not None:
            for _ in range(links):
                self.on_link(flow)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _WatchedTenant:
    """Forwards everything to a tenant's view; reports the links it makes to the watcher."""

    def __init__(self, watcher: LinkWatchingStore, view: TenantStore) -> None:
        self._watcher = watcher
        self._view = view

    def create_link(self, flow: Any, *args: Any, **kwargs: Any) -> Link:
        """The view's ``create_link``, then the notification."""
        link = self._view.create_link(flow, *args, **kwargs)
        self._watcher.notify(str(flow), 1)
        return link

    def create_links(self, flow: Any, pairs: Any, *args: Any, **kwargs: Any) -> list[Link]:
        """The view's bulk ``create_links``, then one notification per link."""
        links = self._view.create_links(flow, pairs, *args, **kwargs)
        self._watcher.notify(str(flow), len(links))
        return links

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)
