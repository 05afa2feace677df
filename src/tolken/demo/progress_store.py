"""A pass-through view of the store that reports each new link, for the demo's progress bars.

The engine reports progress per flow only; the demo wants its bars to move per
record. Every record the first sync settles ends in a new link (a create makes
the PMS record and then links it; a match links at once), so counting
``create_link`` calls counts records done, without the engine knowing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from tolken.store import Link, Store

__all__ = ["LinkWatchingStore"]


class LinkWatchingStore:
    """Forwards everything to ``store``; calls ``on_link(flow)`` after each link is made."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.on_link: Callable[[str], None] | None = None

    def as_store(self) -> Store:
        """This view, typed as the store it stands for (it forwards every attribute)."""
        return cast(Store, self)

    def create_link(self, tenant: str, flow: Any, *args: Any, **kwargs: Any) -> Link:
        """The store's ``create_link``, then the notification."""
        link = self._store.create_link(tenant, flow, *args, **kwargs)
        if self.on_link is not None:
            self.on_link(str(flow))
        return link

    def create_links(self, tenant: str, flow: Any, pairs: Any, *args: Any, **kwargs: Any) -> Any:
        """The store's bulk ``create_links``, then one notification per link."""
        links = self._store.create_links(tenant, flow, pairs, *args, **kwargs)
        if self.on_link is not None:
            for _ in links:
                self.on_link(str(flow))
        return links

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
