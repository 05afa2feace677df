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

    A flow's map is read when first asked for. With ``remember_unstored`` off
    (a cycle that stores its links) a link added before that is not kept: the
    store has it by then, so a first link of 100,000 records does not build a
    map nobody asks for. A dry run stores nothing, so it keeps them.
    """

    def __init__(self, store: TenantStore, *, remember_unstored: bool = True) -> None:
        self._store = store
        self._remember_unstored = remember_unstored
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
        if flow not in self._to_pms and not self._remember_unstored:
            return  # read from the store (where it is by then) when first asked for
        self._load(flow)
        self._to_pms[flow][po_id] = pms_id
        self._to_po[flow][pms_id] = po_id


def _flow(flow: str) -> FlowId:
    if flow not in ("departments", "customers", "projects"):
        raise KeyError(f"unknown flow {flow!r}")
    return flow  # type: ignore[return-value]
