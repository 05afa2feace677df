"""Value types of the pure sync core: projected records, links, merge results and actions.

Everything here is a frozen dataclass holding plain values. Records are compared
in one *flat field space*: the mapping projects each side's record to a dict
``{pms_path: value}`` (``{"name": "Acme", "address.city": "Oslo"}``), so a
PowerOffice customer and a PMS customer carry the same keys.

The planner (:mod:`tolken.engine.plan`) turns these inputs into a list of
:data:`Action` values; an executor applies them in order (see each action's
docstring for what "apply" means).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tolken.vocabulary import ConflictPolicy, LinkState, Side

__all__ = [
    "Action",
    "Ambiguous",
    "ConflictPolicy",
    "CreateInPMS",
    "CreateInPowerOffice",
    "DeactivateInPMS",
    "Fetch",
    "FieldConflict",
    "Link",
    "LinkState",
    "LinkedPair",
    "MarkPMSDeleted",
    "MassDeleteBlocked",
    "MergeResult",
    "ProjectedRecord",
    "ReconcileOutcome",
    "ReconcilePlan",
    "RecordConflict",
    "SaveShadow",
    "Side",
    "Skipped",
    "SourceOutage",
    "Unchanged",
    "UpdatePMS",
    "UpdatePowerOffice",
    "Values",
    "Wait",
]

"""``source-deleted``: the PowerOffice record is gone (its PMS record was made
inactive); ``pms-deleted``: the PMS record was deleted (accounting data is kept).
Only ``active`` links are synchronised."""

Values = Mapping[str, Any]
"""One record in the flat field space: ``{pms_path: value}``."""


@dataclass(frozen=True)
class ProjectedRecord:
    """One side's record after projection into the flat field space.

    ``changed_at`` is the system's modification time (``newest-wins`` compares
    it); ``version`` the optimistic-concurrency token (PMS). ``unresolved``
    names reference fields the projection could not translate through the
    links (a project whose customer is not linked yet); such a record waits.
    ``deleted`` marks a tombstone (a PMS ``delete`` change); its values are ignored.
    """

    id: str
    values: Values
    changed_at: datetime | None = None
    version: int | None = None
    unresolved: frozenset[str] = frozenset()
    deleted: bool = False


@dataclass(frozen=True)
class LinkedPair:
    """A stored link with its shadow.

    ``shadow`` is the last synchronised value of each field. A field absent
    from the shadow (or ``shadow=None``, a link never merged yet, e.g. one made
    by ``tolken link``) gets first-link semantics: an empty value never
    overwrites a non-empty one. ``pms_version`` is the PMS version stored at
    the last sync; it is the ``If-Match`` value when the PMS record was not re-read.
    """

    po_id: str
    pms_id: str
    shadow: Values | None = None
    status: LinkState = "active"
    pms_version: int | None = None


@dataclass(frozen=True)
class FieldConflict:
    """Both sides changed one field to different values; ``winner`` is None when parked (manual).

    ``shadow_known`` is False at first link (no last synchronised value);
    ``shadow`` is then None.
    """

    field: str
    poweroffice: Any
    pms: Any
    shadow: Any
    winner: Side | None
    policy: ConflictPolicy
    shadow_known: bool = True

    @property
    def losing_value(self) -> Any:
        """The value that was overwritten (None when parked: nothing was overwritten)."""
        if self.winner == "poweroffice":
            return self.pms
        if self.winner == "pms":
            return self.poweroffice
        return None

    @property
    def winning_value(self) -> Any:
        """The value both sides will hold (None when parked)."""
        if self.winner == "poweroffice":
            return self.poweroffice
        if self.winner == "pms":
            return self.pms
        return None


@dataclass(frozen=True)
class MergeResult:
    """The outcome of a three-way merge of one linked pair.

    ``to_poweroffice`` / ``to_pms``: flat field → value to write to that side.
    ``shadow``: what both sides hold once every write succeeded (fields parked
    by a ``manual`` conflict keep their old shadow entry, or none).
    ``settled``: the part of ``shadow`` that needs no write but differs from
    the old shadow (both sides changed alike, or first-link agreement).
    """

    to_poweroffice: Values
    to_pms: Values
    shadow: Values
    settled: Values
    conflicts: tuple[FieldConflict, ...] = ()

    @property
    def has_writes(self) -> bool:
        """True when either side must be written."""
        return bool(self.to_poweroffice) or bool(self.to_pms)


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class CreateInPMS:
    """Create a PMS record from a PowerOffice record.

    Apply: commit a pending-create row keyed by ``idempotency_key`` first, then
    POST with ``Idempotency-Key``; after a crash, look the record up by the key
    instead. Then store the link with ``values`` as its shadow.
    """

    po_id: str
    values: Values
    idempotency_key: str


@dataclass(frozen=True)
class CreateInPowerOffice:
    """Create a PowerOffice record from a PMS-only record (``create_in_poweroffice`` on).

    Apply like :class:`CreateInPMS`, with the key as ``ExternalImportReference``.
    """

    pms_id: str
    values: Values
    idempotency_key: str


@dataclass(frozen=True)
class Link:
    """Link two existing records matched by ``rule`` (or by hand).

    Apply: store the link with no shadow; the merge actions for the pair follow
    in the same plan (first-link semantics).
    """

    po_id: str
    pms_id: str
    rule: str


@dataclass(frozen=True)
class UpdatePMS:
    """Write ``fields`` to the PMS record with ``If-Match: expected_version``.

    Apply: PATCH; on success store the new PMS version and copy ``fields``
    into the link's shadow. On a stale version, drop the pair's remaining
    actions, re-read the PMS record and plan the pair again.
    """

    po_id: str
    pms_id: str
    fields: Values
    expected_version: int | None


@dataclass(frozen=True)
class UpdatePowerOffice:
    """Write ``fields`` to the PowerOffice record (JSON Patch of the mapped properties).

    Apply: PATCH; on success copy ``fields`` into the link's shadow.
    """

    po_id: str
    pms_id: str
    fields: Values


@dataclass(frozen=True)
class SaveShadow:
    """Both sides already agree on ``values``: copy them into the link's shadow, no write."""

    po_id: str
    pms_id: str
    values: Values


@dataclass(frozen=True)
class RecordConflict:
    """Record a field conflict (both values). Planned before the writes, so no loser is lost.

    Re-planning may repeat the same conflict; store it once per
    ``(po_id, pms_id, field, poweroffice, pms)``.
    """

    po_id: str
    pms_id: str
    conflict: FieldConflict


@dataclass(frozen=True)
class DeactivateInPMS:
    """The PowerOffice record vanished from a full listing.

    Apply only after ``GET`` of ``po_id`` answers 404: write ``values`` (the
    inactive state, e.g. ``{"active": False}``) to the PMS record and mark the
    link ``source-deleted``. Never a hard delete.
    """

    po_id: str
    pms_id: str
    values: Values


@dataclass(frozen=True)
class MarkPMSDeleted:
    """The PMS record was deleted: mark the link ``pms-deleted``, report; PowerOffice is untouched.

    From a full PMS listing (reconcile) apply only after ``GET`` of ``pms_id``
    answers 404; from a change-feed tombstone apply directly.
    """

    po_id: str
    pms_id: str
    confirm_by_get: bool = False


@dataclass(frozen=True)
class Ambiguous:
    """``record_id`` (of ``source``) matches several ``candidates`` of the other side by ``rule``.

    Also used when several records of ``source``'s other side claim the same
    single record: then ``record_id`` is that record and ``candidates`` the
    claimants. Nothing is linked or created; ``tolken link`` settles it.
    """

    source: Side
    record_id: str
    candidates: tuple[str, ...]
    rule: str


@dataclass(frozen=True)
class Wait:
    """The record cannot be synchronised yet (e.g. its customer is not linked); retry later.

    The executor must not move a change cursor past this record.
    """

    source: Side
    record_id: str
    reason: str


@dataclass(frozen=True)
class Fetch:
    """The planner needs the current record of ``side`` for the pair: read it, plan again."""

    po_id: str
    pms_id: str
    side: Side
    reason: str


@dataclass(frozen=True)
class Skipped:
    """A changed record the flow deliberately leaves alone (inactive link, PMS-only record, ...)."""

    po_id: str | None
    pms_id: str | None
    reason: str


@dataclass(frozen=True)
class Unchanged:
    """The pair is in sync (typically the echo of tolken's own write)."""

    po_id: str
    pms_id: str


Action = (
    CreateInPMS
    | CreateInPowerOffice
    | Link
    | UpdatePMS
    | UpdatePowerOffice
    | SaveShadow
    | RecordConflict
    | DeactivateInPMS
    | MarkPMSDeleted
    | Ambiguous
    | Wait
    | Fetch
    | Skipped
    | Unchanged
)


# --------------------------------------------------------------------------- reconcile


@dataclass(frozen=True)
class ReconcilePlan:
    """Deletes seen by a full listing; each action applies only after a confirming GET 404."""

    actions: tuple[DeactivateInPMS | MarkPMSDeleted, ...] = ()
    listed: int = 0
    linked: int = 0


@dataclass(frozen=True)
class MassDeleteBlocked:
    """The run would deactivate more than ``threshold`` of the flow: stop, ask to confirm."""

    side: Side
    would_delete: tuple[str, ...]
    linked: int
    threshold: float

    @property
    def share(self) -> float:
        """The share of the flow's active links the run would deactivate."""
        return len(self.would_delete) / self.linked if self.linked else 0.0


@dataclass(frozen=True)
class SourceOutage:
    """A full listing came back empty although links exist: an outage, not deletes."""

    side: Side
    linked: int
    reason: str = field(default="the full listing is empty although linked records exist")


ReconcileOutcome = ReconcilePlan | MassDeleteBlocked | SourceOutage
