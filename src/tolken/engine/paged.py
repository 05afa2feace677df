"""Planning one flow a page at a time, with the actions :func:`~tolken.engine.plan.plan_flow` gives.

:func:`~tolken.engine.plan.plan_flow` sees every changed record and every
candidate at once; a first run over 100,000 records per side cannot hold them.
A linked pair is planned from its own two sides (:func:`~tolken.engine.plan.plan_link`),
so pairs plan page by page as they are. The unlinked records are matched
against a :class:`Candidates` lookup (in memory, or a table in SQL) and their
cross-record rules need one more thing, a :class:`ClaimBook`:

1. **Match pass** (:func:`note_matches`): every unlinked record, page by page,
   is looked up and its outcome noted (which target it claims alone, which
   targets it found ambiguous). Nothing is planned yet.
2. **Decide pass** (:func:`decide`): page by page again. A record whose first
   matching rule found several candidates is :class:`Ambiguous`; a record that
   claims a target no other record claims is linked to it
   (:func:`~tolken.engine.plan.plan_first_link`); a target claimed by several
   records is one :class:`Ambiguous` (emitted with its first claimant, by id,
   whose rule it names), and none of them is linked or created; a record that
   found nothing is created on the other side.
3. The PMS-only records no PowerOffice record claimed or reported
   (:meth:`ClaimBook.reported`) are skipped, or matched the other way (steps
   1-2 towards PowerOffice) when ``create_in_poweroffice`` is on.

:func:`plan_flow_paged` runs these steps in memory and gives the same actions
as :func:`~tolken.engine.plan.plan_flow` (as a multiset; their order differs
between pages), for any page size: a property test holds the two together.
The flow runner runs the same steps over tables in SQL
(:mod:`tolken.engine.staging`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Protocol, TypeVar

from tolken.engine.match import CandidateIndex, MatchResult
from tolken.engine.model import (
    Action,
    Ambiguous,
    CreateInPMS,
    CreateInPowerOffice,
    LinkedPair,
    ProjectedRecord,
    Side,
    Skipped,
    Values,
    Wait,
)
from tolken.engine.plan import (
    SKIPPED_PMS_ONLY,
    FlowContext,
    idempotency_key,
    plan_first_link,
    plan_link,
)

__all__ = [
    "Candidates",
    "ClaimBook",
    "IndexedCandidates",
    "MemoryClaims",
    "decide",
    "note_matches",
    "pages",
    "plan_flow_paged",
]

T = TypeVar("T")


def pages(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, as they come."""
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


class Candidates(Protocol):
    """The records of one side a record of the other side may match (unlinked, not deleted)."""

    def find_many(self, values: Sequence[Values]) -> list[MatchResult]:
        """The match of each record of the other side (as :meth:`CandidateIndex.find`)."""

    def get_many(self, ids: Collection[str]) -> dict[str, ProjectedRecord]:
        """The candidates with these ids."""


class ClaimBook(Protocol):
    """What the match pass found, for the decide pass."""

    def note(self, matched: Sequence[tuple[str, MatchResult]]) -> None:
        """Note each ``(source id, match)`` of a page."""

    def claimants(self, targets: Collection[str]) -> dict[str, list[tuple[str, str]]]:
        """For each target: every ``(source id, rule)`` that claimed it alone, by source id."""

    def reported(self, ids: Collection[str]) -> set[str]:
        """Which of these targets were claimed, or found among ambiguous candidates."""


@dataclass(frozen=True)
class IndexedCandidates:
    """:class:`Candidates` held in memory: a :class:`CandidateIndex` over a pool of records."""

    index: CandidateIndex
    pool: Mapping[str, ProjectedRecord]

    def find_many(self, values: Sequence[Values]) -> list[MatchResult]:
        """The match of each record (one :meth:`CandidateIndex.find` each)."""
        return [self.index.find(v) for v in values]

    def get_many(self, ids: Collection[str]) -> dict[str, ProjectedRecord]:
        """The pooled records with these ids."""
        return {i: self.pool[i] for i in ids if i in self.pool}


@dataclass
class MemoryClaims:
    """A :class:`ClaimBook` held in memory."""

    _claims: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)

    def note(self, matched: Sequence[tuple[str, MatchResult]]) -> None:
        """Note each source's unique claim, and every candidate an ambiguous match named."""
        for source_id, found in matched:
            if found.ambiguous:
                self._reported.update(found.candidates)
            elif found.unique is not None:
                self._claims.setdefault(found.unique, []).append((source_id, str(found.rule)))
                self._reported.add(found.unique)

    def claimants(self, targets: Collection[str]) -> dict[str, list[tuple[str, str]]]:
        """The claimants of each target, by source id."""
        return {t: sorted(self._claims.get(t, [])) for t in targets}

    def reported(self, ids: Collection[str]) -> set[str]:
        """The ids claimed or named ambiguous."""
        return {i for i in ids if i in self._reported}


def note_matches(
    records: Sequence[ProjectedRecord], candidates: Candidates, book: ClaimBook
) -> None:
    """The match pass over one page of unlinked records (waiting ones claim nothing)."""
    resolved = [r for r in records if not r.unresolved]
    if resolved:
        found = candidates.find_many([r.values for r in resolved])
        book.note([(r.id, f) for r, f in zip(resolved, found, strict=True)])


def decide(
    ctx: FlowContext,
    target: Side,
    records: Sequence[ProjectedRecord],
    candidates: Candidates,
    book: ClaimBook,
) -> list[Action]:
    """The decide pass over one page of unlinked records of the side other than ``target``.

    ``book`` must hold the match pass over every such record (all pages).
    """
    source: Side = "poweroffice" if target == "pms" else "pms"
    resolved = [r for r in records if not r.unresolved]
    found = dict(
        zip(
            (r.id for r in resolved),
            candidates.find_many([r.values for r in resolved]),
            strict=True,
        )
    )
    claimed = {f.unique for f in found.values() if f.unique is not None}
    claimants = book.claimants(claimed)
    alone = candidates.get_many([t for t in claimed if len(claimants[t]) == 1])
    actions: list[Action] = []
    for record in records:
        if record.unresolved:
            names = ", ".join(sorted(record.unresolved))
            reason = f"waiting for a link: {names} refers to a record that is not linked yet"
            actions.append(Wait(source, record.id, reason))
            continue
        match = found[record.id]
        if match.ambiguous:
            actions.append(Ambiguous(source, record.id, match.candidates, str(match.rule)))
        elif match.unique is not None:
            who = claimants[match.unique]
            if len(who) > 1:
                if who[0][0] == record.id:
                    ids = tuple(source_id for source_id, _ in who)
                    actions.append(Ambiguous(target, match.unique, ids, who[0][1]))
                continue
            other = alone[match.unique]
            actions.extend(plan_first_link(record, other, target, str(match.rule), ctx.policy))
        else:
            key = idempotency_key(ctx.tenant, ctx.flow, source, record.id)
            create = CreateInPMS if target == "pms" else CreateInPowerOffice
            actions.append(create(record.id, record.values, key))
    return actions


def _dedupe(records: Iterable[ProjectedRecord]) -> dict[str, ProjectedRecord]:
    return {record.id: record for record in records}


def _plan_pairs(
    ctx: FlowContext,
    po_by_id: Mapping[str, ProjectedRecord],
    pms_by_id: Mapping[str, ProjectedRecord],
    links_by_po: Mapping[str, LinkedPair],
    links_by_pms: Mapping[str, LinkedPair],
    page_size: int,
) -> list[Action]:
    """The linked pairs that changed: those whose PowerOffice side changed (with their PMS
    side), then the rest."""
    actions: list[Action] = []
    for ids in pages(sorted(po_by_id), page_size):
        for po_id in ids:
            if po_id in links_by_po:
                link = links_by_po[po_id]
                pms = pms_by_id.get(link.pms_id)
                actions.extend(plan_link(link, po_by_id[po_id], pms, policy=ctx.policy))
    for ids in pages(sorted(pms_by_id), page_size):
        for pms_id in ids:
            by_pms = links_by_pms.get(pms_id)
            if by_pms is not None and by_pms.po_id not in po_by_id:
                actions.extend(plan_link(by_pms, None, pms_by_id[pms_id], policy=ctx.policy))

    return actions


def plan_flow_paged(
    ctx: FlowContext,
    *,
    po_changes: Iterable[ProjectedRecord],
    pms_changes: Iterable[ProjectedRecord],
    links: Iterable[LinkedPair],
    pms_candidates: Iterable[ProjectedRecord] = (),
    po_candidates: Iterable[ProjectedRecord] = (),
    page_size: int = 1000,
) -> list[Action]:
    """:func:`~tolken.engine.plan.plan_flow`'s actions, planned ``page_size`` records at a time.

    Same arguments; the steps of the module docstring, with the candidates and
    claims held in memory.
    """
    po_by_id = _dedupe(po_changes)
    pms_by_id = _dedupe(pms_changes)
    links_by_po: dict[str, LinkedPair] = {}
    links_by_pms: dict[str, LinkedPair] = {}
    for link in links:
        links_by_po[link.po_id] = link
        links_by_pms[link.pms_id] = link
    actions = _plan_pairs(ctx, po_by_id, pms_by_id, links_by_po, links_by_pms, page_size)
    new_po = [r for i, r in sorted(po_by_id.items()) if i not in links_by_po and not r.deleted]
    new_pms = [r for i, r in sorted(pms_by_id.items()) if i not in links_by_pms and not r.deleted]
    pms_pool = _dedupe(chain(pms_candidates, new_pms))
    index = CandidateIndex.build("pms", pms_pool.values(), ctx.rules, exclude=set(links_by_pms))
    found: Candidates = IndexedCandidates(index, pms_pool)
    book = MemoryClaims()
    for page in pages(new_po, page_size):
        note_matches(page, found, book)
    for page in pages(new_po, page_size):
        actions.extend(decide(ctx, "pms", page, found, book))
    unreported = [
        r for page in pages(new_pms, page_size) for r in page if r.id not in book.reported([r.id])
    ]
    if not ctx.create_in_poweroffice:
        actions.extend(Skipped(None, r.id, SKIPPED_PMS_ONLY) for r in unreported)
        return actions
    po_pool = _dedupe(po_candidates)
    busy_po = set(links_by_po) | set(po_by_id)
    index = CandidateIndex.build("poweroffice", po_pool.values(), ctx.rules, exclude=busy_po)
    found = IndexedCandidates(index, po_pool)
    back = MemoryClaims()
    for page in pages(unreported, page_size):
        note_matches(page, found, back)
    for page in pages(unreported, page_size):
        actions.extend(decide(ctx, "poweroffice", page, found, back))
    return actions
