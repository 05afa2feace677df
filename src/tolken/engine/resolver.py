"""Reference translation between flows (a project's customer) over the store's link maps."""

from __future__ import annotations

from tolken.store import TenantStore
from tolken.vocabulary import FlowId

__all__ = ["LinkResolver"]


class LinkResolver:
    """A :class:`tolken.mapping.ReferenceResolver` backed by the store, cached per flow.

    Links made during the cycle are added with :meth:`add`, so projects of the
    same cycle see the customers created moments before. Only ``active``-or-not
    links alike translate: a project may keep pointing at an archived customer.
    """

    def __init__(self, store: TenantStore) -> None:
        self._store = store
        self._to_pms: dict[str, dict[str, str]] = {}
        self._to_po: dict[str, dict[str, str]] = {}

    def _load(self, flow: str) -> None:
        if flow not in self._to_pms:
            forward = self._store.link_map(_flow(flow))
            self._to_pms[flow] = forward
            self._to_po[flow] = {pms: po for po, pms in forward.items()}

    def to_pms(self, flow: str, po_id: str) -> str | None:
        """The PMS id linked to PowerOffice record ``po_id`` of ``flow``."""
        self._load(flow)
        return self._to_pms[flow].get(str(po_id))

    def to_poweroffice(self, flow: str, pms_id: str) -> str | None:
        """The PowerOffice id linked to PMS record ``pms_id`` of ``flow``."""
        self._load(flow)
        return self._to_po[flow].get(str(pms_id))

    def add(self, flow: str, po_id: str, pms_id: str) -> None:
        """Remember a link made during this cycle."""
        self._load(flow)
        self._to_pms[flow][po_id] = pms_id
        self._to_po[flow][pms_id] = po_id


def _flow(flow: str) -> FlowId:
    if flow not in ("departments", "customers", "projects"):
        raise KeyError(f"unknown flow {flow!r}")
    return flow  # type: ignore[return-value]
