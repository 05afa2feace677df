"""What one flow's executor works with: the store, the two connectors, the mapping, the clock.

:class:`FlowServices` holds no state of the cycle. Its methods read through the
connectors, project records into the flat field space and make the store
writes that must happen together (a link, its shadow and the history entry
of the write, in one transaction); the state they touch is handed in as
values (a :class:`~tolken.engine.pairs.PairState`, a run id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine.model import Ambiguous, FieldConflict, ProjectedRecord
from tolken.engine.pairs import PairState, jsonable
from tolken.engine.plan import FlowContext
from tolken.engine.resolver import LinkResolver
from tolken.errors import NotFound
from tolken.logging import get_logger
from tolken.mapping import Flow, POProjector, po_projector, project
from tolken.store import Direction, DuplicateLink, HistoryEntry, LinkState, NewLink, TenantStore
from tolken.vocabulary import FlowId, Side

__all__ = ["FlowServices"]


def _enabled(log: Any, level: int) -> bool:
    """Whether ``log`` (a structlog stdlib logger, or any other) writes lines at ``level``."""
    check = getattr(log, "isEnabledFor", None)
    return True if check is None else bool(check(level))


@dataclass(frozen=True)
class FlowServices:
    """The services of one flow (see the module docstring); ``clock`` defaults to the store's."""

    tenant: str
    flow_id: FlowId
    flow: Flow
    ctx: FlowContext
    store: TenantStore
    poweroffice: Connector
    pms: Connector
    resolver: LinkResolver
    log: Any = field(default_factory=lambda: get_logger("tolken.engine"))
    clock: Callable[[], datetime] | None = None

    @property
    def po_resource(self) -> str:
        """The PowerOffice resource of the flow (``Customers``, ...)."""
        return self.flow.poweroffice

    @property
    def pms_resource(self) -> str:
        """The PMS resource of the flow (``customers``, ``projects``)."""
        return self.flow.pms

    def connector(self, side: Side) -> Connector:
        """The connector of ``side``."""
        return self.pms if side == "pms" else self.poweroffice

    def resource(self, side: Side) -> str:
        """The flow's resource on ``side``."""
        return self.pms_resource if side == "pms" else self.po_resource

    def now(self) -> datetime:
        """The current time (the store's clock unless another was given)."""
        return self.clock() if self.clock is not None else self.store.now()

    def exists(self, side: Side, record_id: str) -> bool:
        """Whether a GET of the record on ``side`` finds it (False on 404)."""
        try:
            self.connector(side).get(self.resource(side), record_id)
        except NotFound:
            return False
        return True

    # -- projections ----------------------------------------------------------

    def project_po(self, record: RemoteRecord | None) -> ProjectedRecord | None:
        """A PowerOffice record in the flat field space (unresolved references noted)."""
        if record is None:
            return None
        unresolved: set[str] = set()
        values = self._to_pms_flat(record.data, unresolved)
        return ProjectedRecord(
            record.id, values, changed_at=record.changed_at, unresolved=frozenset(unresolved)
        )

    @cached_property
    def _to_pms_flat(self) -> POProjector:
        # Made once for the flow's records (its contexts hold the resolver: one per cycle).
        return po_projector(self.flow, self.resolver)

    def project_pms(self, record: RemoteRecord | None) -> ProjectedRecord | None:
        """A PMS record (or tombstone) in the flat field space."""
        if record is None:
            return None
        if record.deleted:
            return ProjectedRecord(record.id, {}, deleted=True)
        return ProjectedRecord(
            record.id,
            project(self.flow, record.data),
            changed_at=record.changed_at,
            version=record.version,
        )

    # -- store writes ---------------------------------------------------------

    def record_history(self, entries: Iterable[HistoryEntry]) -> None:
        """Record (and log) writes tolken made: the store keeps the trail, the log shows it."""
        entries = list(entries)
        self.store.add_history_many(entries)
        if not entries or not _enabled(self.log, logging.INFO):
            return  # a batch's lines are skipped at once below the level (the CLI logs errors)
        for e in entries:
            self._log_written(e.link_id, e)

    def record_new_links(
        self, items: Sequence[NewLink], pairs: Sequence[PairState], run_id: int | None
    ) -> None:
        """Store new links with their first shadows and history (and log the writes).

        Sets each pair's ``link_id``; joins the caller's transaction.
        """
        links = self.store.create_links_with_history(self.flow_id, items, run_id=run_id)
        for pair, link in zip(pairs, links, strict=True):
            pair.link_id = link.id
        if not _enabled(self.log, logging.INFO):
            return
        for link, item in zip(links, items, strict=True):
            self._log_written(link.id, item)

    def _log_written(self, link_id: int | None, write: HistoryEntry | NewLink) -> None:
        """The ``record written`` log line of one write tolken made."""
        self.log.info(
            "record written",
            link_id=link_id,
            direction=write.direction,
            action=write.action,
            fields=sorted(write.fields),
            reason=write.reason,
        )

    def save_pair(
        self,
        pair: PairState,
        write: tuple[Direction, str, Mapping[str, Any], str] | None,
        run_id: int | None,
    ) -> None:
        """Store the pair's shadow, and the history entry of ``write`` if any, in one transaction.

        ``write`` is ``(direction, action, fields, reason)``. Nothing is stored
        for a pair without a stored link.
        """
        if pair.link_id is None or pair.link_id < 0:
            return
        shadow = pair.shadow()
        with self.store.transaction():
            self.store.save_shadow(pair.link_id, shadow)
            if write is not None:
                direction, action, fields, reason = write
                entry = HistoryEntry(
                    pair.link_id, direction, action, jsonable(fields), reason, run_id=run_id
                )
                self.record_history([entry])
        pair.stored = shadow
        pair.has_shadow = True

    def store_new_link(
        self,
        pair: PairState,
        write: tuple[Direction, Mapping[str, Any], str],
        pending_key: str | None,
        run_id: int | None,
    ) -> None:
        """Store a created record's link, shadow and history and resolve its pending row, at once.

        ``write`` is ``(direction, body, reason)`` of the create. Raises
        :class:`~tolken.store.DuplicateLink` (the pair is left unlinked) when
        either record was linked meanwhile.
        """
        direction, body, reason = write
        created_id = pair.pms_id if direction == "to_pms" else pair.po_id
        try:
            with self.store.transaction():
                if pending_key is not None:
                    self.store.resolve_pending_create(pending_key, created_id)
                link = self.store.create_link(self.flow_id, pair.po_id, pair.pms_id)
                pair.link_id = link.id
                self.save_pair(pair, (direction, "create", body, reason), run_id)
        except DuplicateLink:
            pair.link_id = None
            raise
        self.resolver.add(self.flow_id, pair.po_id, pair.pms_id)

    def end_link(
        self,
        po_id: str,
        state: LinkState,
        write: tuple[Direction, str, Mapping[str, Any], str],
        run_id: int | None,
    ) -> None:
        """Set the state of the link of ``po_id`` (if any) and record why, in one transaction."""
        link = self.store.get_link_by_po(self.flow_id, po_id)
        if link is None:
            return
        direction, action, fields, reason = write
        with self.store.transaction():
            self.store.set_link_state(link.id, state)
            self.record_history(
                [HistoryEntry(link.id, direction, action, dict(fields), reason, run_id=run_id)]
            )

    def record_ambiguous(self, action: Ambiguous) -> None:
        """Park the record of an ambiguous match with a message saying how to settle it."""
        other = "PMS" if action.source == "poweroffice" else "PowerOffice"
        message = (
            f"{len(action.candidates)} {other} records match by {action.rule}: "
            f"{', '.join(action.candidates)}; link one by hand with tolken link"
        )
        self.log.warning(
            "ambiguous match", side=action.source, record_id=action.record_id, error=message
        )
        self.store.record_failure(
            self.flow_id, action.source, action.record_id, "AmbiguousMatch", message
        )

    def record_conflict(self, link_id: int, c: FieldConflict, run_id: int | None) -> None:
        """Record a field conflict of a link, once per (field, both values)."""
        po_value, pms_value = jsonable(c.poweroffice), jsonable(c.pms)
        known = self.store.list_conflicts(self.flow_id, link_id=link_id)
        if any(
            k.field == c.field and k.poweroffice_value == po_value and k.pms_value == pms_value
            for k in known
        ):
            return  # re-planning the same pair repeats a conflict already recorded
        winner = c.winner or "parked"
        self.log.info(
            "conflict recorded", link_id=link_id, field=c.field, policy=c.policy, winner=winner
        )
        self.store.record_conflict(
            self.flow_id,
            link_id,
            c.field,
            poweroffice_value=po_value,
            pms_value=pms_value,
            shadow_value=jsonable(c.shadow),
            policy=c.policy,
            winner=winner,
            run_id=run_id,
        )
