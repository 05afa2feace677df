"""Batches: many creates or first links stored with a few store transactions, not a few each.

The flow runner hands the executor runs of consecutive groups that need no
per-record decision: creates in the PMS, and first links whose two records
already agree (``[Link]`` or ``[Link, SaveShadow]``). Crash safety is as for
one record: pending rows are committed before any POST, and a created record
whose link was not committed yet is found by its idempotency key by the next
run. Anything unusual (a reused key, a duplicate link) falls back to the
one-by-one path.

The POSTs of a batch go out concurrently when the PMS connector allows it
(:class:`~tolken.connectors.base.ConcurrentWrites`, ``pms.max_concurrency``):
every record of a batch belongs to one flow, and the flows run in dependency
order, so a reference's target always exists before the batch starts; the
answers are handled in plan order on the engine's own thread, which alone
touches the store. One :class:`Writers` pool serves every batch of a flow
(its threads are started once, not once per batch); each of its threads takes
the batch's next record until none is left, and the engine's thread waits once
per batch, not once per record.

:func:`create_many_in_pms` and :func:`link_many` work through the flow's
:class:`~tolken.engine.executor.Executor` (its public methods: apply, park,
adopt); the other functions take services and values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from tolken._closing import Closeable
from tolken.connectors.base import ConcurrentWrites, RemoteRecord
from tolken.engine.executor import Executor
from tolken.engine.model import Action, CreateInPMS, Link, SaveShadow, Unchanged
from tolken.engine.pairs import PairState, jsonable, link_reason, without_empty
from tolken.engine.services import FlowServices
from tolken.errors import RecordError, Retriable, TolkenError
from tolken.mapping import pms_changes
from tolken.store import Direction, DuplicateLink, DuplicatePendingCreate, NewLink

__all__ = [
    "BATCH",
    "Created",
    "FirstLink",
    "Writers",
    "add_pending",
    "create_many_in_pms",
    "first_links",
    "is_plain_link",
    "link_many",
    "store_created",
    "store_first_links",
]

BATCH = 50
"""Groups per batch: small enough that a stop request is honoured quickly."""

_T = TypeVar("_T")
_R = TypeVar("_R")


class Writers(Closeable):
    """The threads that POST a flow's batches, started on first use; a context manager.

    ``width`` is the PMS connector's ``write_concurrency``
    (:class:`~tolken.connectors.base.ConcurrentWrites`), 1 for any other
    connector (no thread: the POSTs go out one at a time on the caller's).
    Leaving the context waits for the threads.
    """

    def __init__(self, svc: FlowServices) -> None:
        pms = svc.pms
        self.width = pms.write_concurrency if isinstance(pms, ConcurrentWrites) else 1
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        """The thread pool (made on the first call)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.width, "tolken-pms-create")
        return self._pool

    def map(
        self, fn: Callable[[_T], _R], items: Sequence[_T], give_up: threading.Event
    ) -> list[_R | None]:
        """``fn`` of every item, up to ``width`` at once; the results in the items' order.

        Each thread takes the next item until none is left or ``give_up`` is
        set (an item never taken gives None), and the caller waits once for the
        lot: one wake-up per batch, not one per item, as a future per item would
        cost. An exception ``fn`` raises sets ``give_up`` (no further item
        starts) and is raised here once every thread has stopped; so is one
        that interrupts the wait.
        """
        results: list[_R | None] = [None] * len(items)
        claim = iter(range(len(items)))
        claiming = threading.Lock()

        def work() -> None:
            try:
                while not give_up.is_set():
                    with claiming:
                        i = next(claim, None)
                    if i is None:
                        return
                    results[i] = fn(items[i])
            except BaseException:
                give_up.set()
                raise

        pool = self.pool()
        workers = [pool.submit(work) for _ in range(min(self.width, len(items)))]
        try:
            wait(workers)
        except BaseException:
            give_up.set()  # interrupted while waiting: the threads start nothing new
            raise
        for worker in workers:
            worker.result()  # re-raises a worker's exception
        return results

    def close(self) -> None:
        """Wait for the threads and end them."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@dataclass(frozen=True)
class Created:
    """A record the batch created in the PMS: its action, the answer and the body posted."""

    action: CreateInPMS
    record: RemoteRecord
    body: Mapping[str, Any]


@dataclass(frozen=True)
class FirstLink:
    """A first link of a batch: the pair, the planned link, and whether the pair is unchanged."""

    pair: PairState
    link: Link
    unchanged: bool


def add_pending(
    svc: FlowServices, actions: Sequence[CreateInPMS]
) -> tuple[list[CreateInPMS], list[CreateInPMS]]:
    """Commit the pending rows of a batch: (fresh, reused keys) actions."""
    try:
        # One statement for the lot; it fails as a whole when any key was used before.
        svc.store.add_pending_creates(
            svc.flow_id, "pms", [(x.po_id, x.idempotency_key) for x in actions]
        )
        return list(actions), []
    except DuplicatePendingCreate:
        pass
    fresh: list[CreateInPMS] = []
    reused: list[CreateInPMS] = []
    with svc.store.transaction():
        for action in actions:
            try:
                svc.store.add_pending_create(
                    svc.flow_id, "pms", action.po_id, action.idempotency_key
                )
                fresh.append(action)
            except DuplicatePendingCreate:
                reused.append(action)
    return fresh, reused


def store_created(
    svc: FlowServices,
    made: Sequence[Created],
    pairs: Sequence[PairState],
    run_id: int | None,
) -> bool:
    """Link, shadow and record the history of many new PMS records in one transaction.

    ``pairs`` are the new pairs, one per ``made``. False (nothing stored) when
    one of them was linked meanwhile: settle them one by one then.
    """
    try:
        with svc.store.transaction():
            svc.store.resolve_pending_creates({m.action.idempotency_key: m.record.id for m in made})
            svc.record_new_links(
                [
                    NewLink(
                        p.po_id,
                        p.pms_id,
                        p.shadow(),
                        "to_pms",
                        "create",
                        jsonable(m.body),
                        "new PowerOffice record",
                    )
                    for p, m in zip(pairs, made, strict=True)
                ],
                pairs,
                run_id,
            )
    except DuplicateLink:
        for pair in pairs:
            pair.link_id = None
        return False
    for pair in pairs:
        pair.stored, pair.has_shadow = pair.shadow(), True
        svc.resolver.add(svc.flow_id, pair.po_id, pair.pms_id)
    return True


def is_plain_link(group: Sequence[Action]) -> bool:
    """A first link whose records already agree: no write to either system."""
    return (
        isinstance(group[0], Link)
        and len(group) <= 2
        and all(isinstance(action, SaveShadow | Unchanged) for action in group[1:])
    )


def first_links(
    groups: Sequence[Sequence[Action]],
    po_records: Mapping[str, RemoteRecord],
    pms_records: Mapping[str, RemoteRecord],
) -> list[FirstLink]:
    """The pairs of plain first-link groups (see :func:`is_plain_link`), with agreed shadows."""
    out: list[FirstLink] = []
    for group in groups:
        link = group[0]
        assert isinstance(link, Link)
        values: dict[str, Any] = {}
        for action in group[1:]:
            if isinstance(action, SaveShadow):
                values.update(action.values)
        pair = PairState(None, link.po_id, link.pms_id, values, bool(values))
        pair.see_po(po_records.get(link.po_id))
        pair.see_pms(pms_records.get(link.pms_id))
        out.append(FirstLink(pair, link, isinstance(group[-1], Unchanged)))
    return out


def store_first_links(svc: FlowServices, links: Sequence[FirstLink], run_id: int | None) -> bool:
    """Store many first links (and their agreed shadows) in one transaction.

    False (nothing stored) when one of them is a duplicate: apply them one by one then.
    """
    try:
        with svc.store.transaction():
            svc.record_new_links(
                [
                    NewLink(
                        f.pair.po_id,
                        f.pair.pms_id,
                        f.pair.shadow() if f.pair.has_shadow else None,
                        "to_pms",
                        "link",
                        {},
                        link_reason(f.link.rule),
                    )
                    for f in links
                ],
                [f.pair for f in links],
                run_id,
            )
    except DuplicateLink:
        for first in links:
            first.pair.link_id = None
        return False
    for first in links:
        if first.pair.has_shadow:
            first.pair.stored = first.pair.shadow()
        svc.resolver.add(svc.flow_id, first.pair.po_id, first.pair.pms_id)
    return True


def create_many_in_pms(
    executor: Executor, actions: Sequence[CreateInPMS], writers: Writers | None = None
) -> None:
    """Create many PMS records with two store transactions for the lot instead of two each.

    Every pending row is committed before any POST; a key used before (an
    interrupted create) takes the one-by-one path, which looks the record up first.
    ``writers`` (the flow's, see :class:`Writers`) POST them; without it a pool
    is made for this call alone.
    """
    if executor.state.dry_run or len(actions) < 2:
        for action in actions:
            executor.apply([action])
        return
    fresh, reused = add_pending(executor.services, actions)
    made: list[Created] = []
    stopped: TolkenError | None = None
    try:
        if writers is None:
            with Writers(executor.services) as own:
                answers = _post_all(executor.services, fresh, own)
        else:
            answers = _post_all(executor.services, fresh, writers)
        for action, body, answer in answers:
            if isinstance(answer, RemoteRecord):
                executor.note_success()
                made.append(Created(action, answer, body))
            elif isinstance(answer, RecordError | Retriable):
                executor.note_failure(answer)
                executor.park("poweroffice", action.po_id, answer)
            elif answer is not None:
                stopped = stopped or answer  # Fatal, Stopped: raised once the made are linked
    finally:
        _link_created(executor, made)
    if stopped is not None:
        raise stopped  # what was never sent stays pending, settled by key next run
    for action in reused:
        executor.apply([action])


_Answer = RemoteRecord | TolkenError | None
"""What one POST of a batch came to: the record, the error, or None when it was never sent."""


def _post_all(
    svc: FlowServices, actions: Sequence[CreateInPMS], writers: Writers
) -> list[tuple[CreateInPMS, Mapping[str, Any], _Answer]]:
    """POST every action, up to ``writers.width`` at once; answers in order.

    After a fatal error (or a stop) no further POST is started; those records
    stay pending, as after a crash, and the next run settles them by their key.
    """
    bodies = [without_empty(pms_changes(svc.flow, action.values)) for action in actions]
    give_up = threading.Event()

    def post(i: int) -> _Answer:
        if give_up.is_set():
            return None
        try:
            return svc.pms.create(
                svc.pms_resource, bodies[i], idempotency_key=actions[i].idempotency_key
            )
        except (RecordError, Retriable) as exc:
            return exc  # this record is parked; the others go on
        except TolkenError as exc:
            give_up.set()
            return exc

    if writers.width <= 1 or len(actions) < 2:
        answers = [post(i) for i in range(len(actions))]
    else:
        answers = writers.map(post, range(len(actions)), give_up)
    return list(zip(actions, bodies, answers, strict=True))


def _link_created(executor: Executor, made: Sequence[Created]) -> None:
    if not made:
        return
    st, svc = executor.state, executor.services
    pairs = []
    for m in made:
        pair = PairState(None, m.action.po_id, m.record.id, dict(m.action.values), True)
        pair.see_po(st.po_records.get(m.action.po_id), executor.po_hash(m.action.po_id))
        pair.see_pms(m.record)
        pairs.append(pair)
    if store_created(svc, made, pairs, st.run_id):
        for pair in pairs:
            executor.adopt(pair, "created")
            executor.settled({("poweroffice", pair.po_id)})
        return
    # Someone linked one of them meanwhile: settle them one by one.
    for pair, m in zip(pairs, made, strict=True):
        write: tuple[Direction, Mapping[str, Any], str] = (
            "to_pms",
            m.body,
            "new PowerOffice record",
        )
        try:
            svc.store_new_link(pair, write, m.action.idempotency_key, st.run_id)
        except DuplicateLink as exc:
            executor.park("poweroffice", m.action.po_id, exc)
            continue
        executor.adopt(pair, "created")


def link_many(executor: Executor, groups: Sequence[Sequence[Action]]) -> None:
    """Store many first links (and their agreed shadows) in one transaction."""
    st = executor.state
    if st.dry_run or len(groups) < 2:
        for group in groups:
            executor.apply(group)
        return
    firsts = first_links(groups, st.po_records, st.pms_records)
    if not store_first_links(executor.services, firsts, st.run_id):
        for group in groups:
            executor.apply(group)  # one by one: the duplicate is parked, the others linked
        return
    for first in firsts:
        executor.adopt(first.pair, "linked")
        if first.unchanged:
            st.report.add("unchanged")
        executor.note_success()
        executor.settled({("poweroffice", first.pair.po_id), ("pms", first.pair.pms_id)})
