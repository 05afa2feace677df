"""Links, shadows and per-link history."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Row,
    Select,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from tolken.store._base import (
    TenantBound,
    bind_values,
    chunked,
    insert_many,
    insert_values,
    values_per_statement,
)
from tolken.store._flowstate import FlowState, compact_row, decode_shadow
from tolken.store._models import (
    FLOWS,
    LINK_STATES,
    FlowVersionRow,
    HistoryRow,
    LinkRow,
    ShadowRow,
    aware_utc,
)
from tolken.store._records import (
    FLOW_PMS_RESOURCE,
    Direction,
    DuplicateLink,
    FlowId,
    HistoryEntry,
    Link,
    LinkState,
    NewLink,
    Shadow,
    UnknownRecord,
)

__all__ = ["LinkRepository", "check_flow"]

_LINK_COLUMNS = (
    LinkRow.id,
    LinkRow.tenant,
    LinkRow.flow,
    LinkRow.poweroffice_id,
    LinkRow.pms_id,
    LinkRow.state,
    LinkRow.created_at,
    LinkRow.updated_at,
)
# Shadow columns without result processing (JSON as text, timestamps as the
# driver returns them); flowstate decodes them only when asked.
_RAW_SHADOW_COLUMNS = (
    sql_cast(ShadowRow.fields, Text),
    ShadowRow.poweroffice_version,
    ShadowRow.poweroffice_hash,
    type_coerce(ShadowRow.poweroffice_changed_at, String),
    ShadowRow.pms_version,
    ShadowRow.pms_hash,
    type_coerce(ShadowRow.pms_changed_at, String),
)
_PAIRS_PAGE = 5000
_HISTORY_COLUMNS = (
    HistoryRow.link_id,
    HistoryRow.direction,
    HistoryRow.action,
    HistoryRow.fields,
    HistoryRow.reason,
    HistoryRow.run_id,
    HistoryRow.at,
    HistoryRow.id,
)
# Built once: every write to a flow's links moves its version, and building the
# statement (and its cache key) each time cost more than running it.
_BUMP = (
    update(FlowVersionRow)
    .where(
        FlowVersionRow.tenant == bindparam("v_tenant"),
        FlowVersionRow.flow == bindparam("v_flow"),
    )
    .values(version=FlowVersionRow.version + 1)
)
_LINKS = cast(Table, LinkRow.__table__)
_SHADOWS = cast(Table, ShadowRow.__table__)
_HISTORY = cast(Table, HistoryRow.__table__)
_LINK_NAMES = (
    "tenant",
    "flow",
    "pms_resource",
    "poweroffice_id",
    "pms_id",
    "state",
    "created_at",
    "updated_at",
)
_SHADOW_NAMES = (
    "link_id",
    *Shadow._fields,
    "updated_at",
)
_HISTORY_NAMES = ("link_id", "direction", "action", "fields", "reason", "run_id", "at")
_RAW_LINK_COLUMNS = (
    *_LINK_COLUMNS[:6],
    type_coerce(LinkRow.created_at, String),
    type_coerce(LinkRow.updated_at, String),
)


def check_flow(flow: str) -> None:
    """Refuse an unknown flow id before it reaches the database."""
    if flow not in FLOWS:
        raise ValueError(f"unknown flow {flow!r}; expected one of {', '.join(FLOWS)}")


class _LinkClash(Exception):
    """A new link's row broke a unique constraint (turned into :class:`DuplicateLink`)."""


def _check_aware(shadow: Shadow) -> None:
    for moment in (shadow.poweroffice_changed_at, shadow.pms_changed_at):
        if moment is not None:
            aware_utc(moment)


def _shadow_and_history_values(
    items: Sequence[NewLink], run_id: int | None, now: datetime
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The shadow rows (of the items with a shadow) and history rows of new links, in the
    order of ``_SHADOW_NAMES`` and ``_HISTORY_NAMES``, each link id still ``None``."""
    shadows = [(None, *item.shadow, now) for item in items if item.shadow is not None]
    history = [
        (None, item.direction, item.action, item.fields, item.reason, run_id, now) for item in items
    ]
    return shadows, history


def _link(row: Row[Any]) -> Link:
    return Link._make(row)


def _select_links() -> Select[Any]:
    return select(*_LINK_COLUMNS)


class _StoreRows:
    """A flow's rows in the store, read for a :class:`FlowState` (every query tenant-scoped)."""

    def __init__(self, repo: LinkRepository, flow: FlowId, *, joined: bool) -> None:
        self._repo = repo
        self._flow = flow
        self._joined = joined

    def _conn(self) -> AbstractContextManager[Connection]:
        if self._joined:
            return self._repo._read()  # noqa: SLF001 - the repository's own helper
        return self._repo._committed()  # noqa: SLF001 - the repository's own helper

    def _scope(self) -> tuple[Any, ...]:
        return (LinkRow.tenant == self._repo.tenant, LinkRow.flow == self._flow)

    def rows(self, key: str, ids: Collection[Any]) -> list[tuple[Any, ...]]:
        column = {"id": LinkRow.id, "po": LinkRow.poweroffice_id, "pms": LinkRow.pms_id}[key]
        found: list[tuple[Any, ...]] = []
        if not ids:
            return found  # no connection for nothing (an idle cycle's empty last page)
        with self._conn() as conn:
            for batch in chunked(ids):
                stmt = (
                    select(*_RAW_LINK_COLUMNS, *_RAW_SHADOW_COLUMNS)
                    .outerjoin(ShadowRow, ShadowRow.link_id == LinkRow.id)
                    .where(*self._scope(), column.in_(batch))
                )
                found.extend(compact_row(row) for row in conn.execute(stmt))
        return found

    def count(self) -> int:
        with self._conn() as conn:
            stmt = select(func.count()).select_from(LinkRow).where(*self._scope())
            return int(conn.execute(stmt).scalar_one())

    def exists(self) -> bool:
        with self._conn() as conn:
            stmt = select(LinkRow.id).where(*self._scope()).limit(1)
            return conn.execute(stmt).first() is not None

    def pairs(self) -> Iterator[tuple[str, str, str]]:
        # Paged by link id, so no page of rows outlives its turn (and no cursor
        # stays open while the caller works).
        after = -1
        while True:
            stmt = (
                select(LinkRow.id, LinkRow.poweroffice_id, LinkRow.pms_id, LinkRow.state)
                .where(*self._scope(), LinkRow.id > after)
                .order_by(LinkRow.id)
                .limit(_PAIRS_PAGE)
            )
            with self._conn() as conn:
                page = conn.execute(stmt).tuples().all()
            for _link_id, po_id, pms_id, state in page:
                yield po_id, pms_id, state
            if len(page) < _PAIRS_PAGE:
                return
            after = page[-1][0]


class LinkRepository(TenantBound):
    """A tenant's links between records, their shadows, and the history of writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def _bump(self, conn: Connection, flows: Iterable[str]) -> None:
        """Move the version of each of this tenant's flows whose links or shadows a write touches.

        Called before the write itself, so writers of one flow queue on this row
        instead of deadlocking on each other's link rows.
        """
        for flow in sorted(set(flows)):  # one lock order for every worker
            # A plain UPDATE first, built once (an upsert's compiled form is not even
            # cached: SQLAlchemy builds no cache key for ON CONFLICT ... DO UPDATE).
            moved = conn.execute(_BUMP, {"v_tenant": self.tenant, "v_flow": flow})
            if moved.rowcount == 1:
                continue
            insert_fn = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = insert_fn(FlowVersionRow).values(tenant=self.tenant, flow=flow, version=1)
            stmt = stmt.on_conflict_do_update(  # the row's first write, or a race for it
                index_elements=[FlowVersionRow.tenant, FlowVersionRow.flow],
                set_={"version": FlowVersionRow.version + 1},
            )
            conn.execute(stmt)

    def _flows_of(self, conn: Connection, link_ids: Iterable[int]) -> set[str]:
        """The flows of the tenant's links ``link_ids``; :class:`UnknownRecord` if one is not."""
        flows: set[str] = set()
        for batch in chunked(dict.fromkeys(link_ids)):
            # By primary key only, the tenant compared here: with ``tenant = ?`` in the
            # WHERE, SQLite walks the tenant's index (every link of the tenant) per batch.
            stmt = select(LinkRow.id, LinkRow.flow, LinkRow.tenant).where(LinkRow.id.in_(batch))
            rows = conn.execute(stmt).tuples().all()
            found = {link_id: flow for link_id, flow, tenant in rows if tenant == self.tenant}
            missing = [link_id for link_id in batch if link_id not in found]
            if missing:
                raise UnknownRecord(f"no link {missing[0]}")
            flows.update(found.values())
        return flows

    # -- links -------------------------------------------------------------

    def create_link(
        self,
        flow: FlowId,
        poweroffice_id: str,
        pms_id: str,
        *,
        state: LinkState = "active",
    ) -> Link:
        """Link two records; raises :class:`DuplicateLink` if either is already linked."""
        return self.create_links(flow, [(poweroffice_id, pms_id)], state=state)[0]

    def create_links(
        self,
        flow: FlowId,
        pairs: Sequence[tuple[str, str]],
        *,
        state: LinkState = "active",
    ) -> list[Link]:
        """Link many ``(poweroffice_id, pms_id)`` pairs in one statement, all or none."""
        check_flow(flow)
        if state not in LINK_STATES:
            raise ValueError(f"unknown link state {state!r}")
        if not pairs:
            return []
        with self._write() as conn:
            try:
                # A savepoint keeps the caller's transaction usable after a duplicate.
                with conn.begin_nested():
                    self._bump(conn, [flow])
                    return self._insert_links(conn, flow, pairs, state, self.now())
            except IntegrityError:
                raise self._duplicate_error(conn, flow, pairs) from None

    def create_links_with_history(
        self, flow: FlowId, items: Sequence[NewLink], *, run_id: int | None = None
    ) -> list[Link]:
        """Link many new pairs with their first shadows and history entries, all or none.

        What :meth:`create_links`, :meth:`save_shadows` and
        :meth:`add_history_many` do for links made here, in a few statements
        for the lot (the links are new and the tenant's, so nothing is looked
        up). Raises :class:`DuplicateLink` (and stores none) if a record is
        already linked.
        """
        check_flow(flow)
        if not items:
            return []
        for item in items:
            if item.shadow is not None:
                _check_aware(item.shadow)
        pairs = [(str(item.poweroffice_id), str(item.pms_id)) for item in items]
        now = self.now()
        with self._write() as conn:
            return self._links_with_history(conn, flow, items, pairs, run_id, now)

    def _links_with_history(
        self,
        conn: Connection,
        flow: FlowId,
        items: Sequence[NewLink],
        pairs: Sequence[tuple[str, str]],
        run_id: int | None,
        now: datetime,
    ) -> list[Link]:
        """:meth:`create_links_with_history` in a few multi-row statements, all or none.

        Every value is converted before the first write (so a value that cannot be
        stored fails with nothing written), then the links go in a few hundred a
        statement, their ids fill in the shadow and history rows, and those go in
        the same way. PostgreSQL does it inside a savepoint (a failed statement
        aborts its transaction), the flow's version moved first (one lock order for
        every worker). SQLite needs none: it undoes a failed statement whole and the
        transaction goes on, and should a later statement fail, the links already
        made are deleted again (their shadows and history with them); its version
        moves last (one writer at a time: no lock order to keep).
        """
        resource = FLOW_PMS_RESOURCE[flow]
        link_params = bind_values(
            conn,
            _LINKS,
            _LINK_NAMES,
            (
                (self.tenant, flow, resource, po_id, pms_id, "active", now, now)
                for po_id, pms_id in pairs
            ),
        )
        shadow_values, history_values = _shadow_and_history_values(items, run_id, now)
        shadows = bind_values(conn, _SHADOWS, _SHADOW_NAMES, shadow_values)
        history = bind_values(conn, _HISTORY, _HISTORY_NAMES, history_values)
        with_shadow = [
            po_id for (po_id, _), item in zip(pairs, items, strict=True) if item.shadow is not None
        ]
        ids: dict[str, int] = {}

        def write() -> None:
            step = values_per_statement(len(_LINK_NAMES))
            for start in range(0, len(link_params), step):
                part = link_params[start : start + step]
                try:
                    made = insert_values(conn, _LINKS, _LINK_NAMES, part, ("poweroffice_id", "id"))
                except IntegrityError as exc:
                    raise _LinkClash from exc  # named once the statement is undone
                ids.update((po_id, link_id) for po_id, link_id in made)
            for row, po_id in zip(shadows, with_shadow, strict=True):
                row[0] = ids[po_id]
            for row, (po_id, _) in zip(history, pairs, strict=True):
                row[0] = ids[po_id]
            insert_values(conn, _SHADOWS, _SHADOW_NAMES, shadows)
            insert_values(conn, _HISTORY, _HISTORY_NAMES, history)

        try:
            if conn.dialect.name == "sqlite":
                try:
                    write()
                    self._bump(conn, [flow])
                except BaseException:
                    self._unmake(conn, ids.values())
                    raise
            else:
                with conn.begin_nested():
                    self._bump(conn, [flow])
                    write()
        except _LinkClash:
            raise self._duplicate_error(conn, flow, pairs) from None
        stamp = now.astimezone(UTC)  # as the store gives it back
        return [
            Link(ids[po_id], self.tenant, flow, po_id, pms_id, "active", stamp, stamp)
            for po_id, pms_id in pairs
        ]

    def _unmake(self, conn: Connection, link_ids: Iterable[int]) -> None:
        """Delete links just made in this transaction (their shadows and history cascade)."""
        for batch in chunked(list(link_ids)):
            conn.execute(delete(LinkRow).where(LinkRow.id.in_(batch)))

    def _insert_links(
        self,
        conn: Connection,
        flow: FlowId,
        pairs: Sequence[tuple[str, str]],
        state: LinkState,
        now: datetime,
    ) -> list[Link]:
        keyed = [(str(po_id), str(pms_id)) for po_id, pms_id in pairs]
        rows = [
            {
                "tenant": self.tenant,
                "flow": flow,
                "pms_resource": FLOW_PMS_RESOURCE[flow],
                "poweroffice_id": po_id,
                "pms_id": pms_id,
                "state": state,
                "created_at": now,
                "updated_at": now,
            }
            for po_id, pms_id in keyed
        ]
        if conn.dialect.name != "sqlite":
            result = conn.execute(
                insert(LinkRow).returning(*_LINK_COLUMNS, sort_by_parameter_order=True), rows
            )
            return [_link(row) for row in result]
        # SQLite cannot return ordered ids from one multi-row INSERT, so SQLAlchemy
        # would send one INSERT per row: insert them in one executemany, then read
        # the ids back by the (tenant, flow, poweroffice_id) key.
        insert_many(conn, LinkRow.__table__, rows)
        ids: dict[str, int] = {}
        for batch in chunked([po_id for po_id, _ in keyed]):
            stmt = select(LinkRow.poweroffice_id, LinkRow.id).where(
                LinkRow.tenant == self.tenant,
                LinkRow.flow == flow,
                LinkRow.poweroffice_id.in_(batch),
            )
            ids.update(conn.execute(stmt).tuples().all())
        stamp = now.astimezone(UTC)  # as the store gives it back
        return [
            Link(ids[po_id], self.tenant, flow, po_id, pms_id, state, stamp, stamp)
            for po_id, pms_id in keyed
        ]

    def _duplicate_error(
        self, conn: Connection, flow: FlowId, pairs: Sequence[tuple[str, str]]
    ) -> DuplicateLink:
        seen_po: set[str] = set()
        seen_pms: set[str] = set()
        for po_id, pms_id in pairs:
            if po_id in seen_po or pms_id in seen_pms:
                return DuplicateLink(f"{flow}: the same record appears twice in one batch of links")
            seen_po.add(po_id)
            seen_pms.add(pms_id)
            existing = self._one_link(
                conn,
                LinkRow.flow == flow,
                LinkRow.poweroffice_id == po_id,
            )
            if existing is not None:
                return DuplicateLink(
                    f"{flow}: PowerOffice record {po_id} is already linked to PMS record "
                    f"{existing.pms_id} (link {existing.id})",
                )
            resource = FLOW_PMS_RESOURCE[flow]
            existing = self._one_link(
                conn,
                LinkRow.pms_resource == resource,
                LinkRow.pms_id == pms_id,
            )
            if existing is not None:
                return DuplicateLink(
                    f"{flow}: PMS {resource} record {pms_id} is already linked to PowerOffice "
                    f"{existing.flow} record {existing.poweroffice_id} (link {existing.id})",
                )
        # Another writer committed the duplicate and then removed it; still a duplicate.
        return DuplicateLink(f"{flow}: a record in this batch is already linked")

    def _one_link(self, conn: Connection, *where: Any) -> Link | None:
        row = conn.execute(_select_links().where(LinkRow.tenant == self.tenant, *where)).first()
        return _link(row) if row is not None else None

    def get_link(self, link_id: int) -> Link | None:
        """This tenant's link with this id, or ``None``."""
        with self._read() as conn:
            return self._one_link(conn, LinkRow.id == link_id)

    def get_link_by_po(self, flow: FlowId, poweroffice_id: str) -> Link | None:
        """The link of a PowerOffice record in a flow, or ``None``."""
        with self._read() as conn:
            return self._one_link(
                conn,
                LinkRow.flow == flow,
                LinkRow.poweroffice_id == str(poweroffice_id),
            )

    def get_link_by_pms(self, flow: FlowId, pms_id: str) -> Link | None:
        """The link of a PMS record in a flow, or ``None``."""
        with self._read() as conn:
            return self._one_link(
                conn,
                LinkRow.flow == flow,
                LinkRow.pms_id == str(pms_id),
            )

    def get_link_by_pms_resource(self, resource: str, pms_id: str) -> Link | None:
        """The link of a PMS record by resource (``customers``/``projects``), whatever the flow.

        A PMS change feed names only the resource; this tells a department from a customer.
        """
        with self._read() as conn:
            return self._one_link(
                conn,
                LinkRow.pms_resource == resource,
                LinkRow.pms_id == str(pms_id),
            )

    def links_by_po(self, flow: FlowId, poweroffice_ids: Iterable[str]) -> dict[str, Link]:
        """Links of many PowerOffice records, keyed by PowerOffice id (missing ids left out)."""
        return self._links_by(LinkRow.flow == flow, LinkRow.poweroffice_id, poweroffice_ids)

    def links_by_pms(self, flow: FlowId, pms_ids: Iterable[str]) -> dict[str, Link]:
        """Links of many PMS records, keyed by PMS id (missing ids left out)."""
        return self._links_by(LinkRow.flow == flow, LinkRow.pms_id, pms_ids)

    def links_by_pms_resource(self, resource: str, pms_ids: Iterable[str]) -> dict[str, Link]:
        """Links of many PMS records of a resource (``customers``/``projects``), any flow.

        For a batch of PMS change-feed items, which name only the resource.
        """
        return self._links_by(LinkRow.pms_resource == resource, LinkRow.pms_id, pms_ids)

    def _links_by(self, scope: Any, column: Any, ids: Iterable[str]) -> dict[str, Link]:
        key_index = 3 if column is LinkRow.poweroffice_id else 4
        found: dict[str, Link] = {}
        with self._read() as conn:
            for batch in chunked(dict.fromkeys(str(i) for i in ids)):
                stmt = _select_links().where(
                    LinkRow.tenant == self.tenant, scope, column.in_(batch)
                )
                for row in conn.execute(stmt):
                    found[row[key_index]] = _link(row)
        return found

    def list_links(
        self,
        flow: FlowId | None = None,
        *,
        state: LinkState | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Link]:
        """The tenant's links ordered by id, optionally of one flow and state."""
        stmt = _select_links().where(LinkRow.tenant == self.tenant).order_by(LinkRow.id)
        if flow is not None:
            stmt = stmt.where(LinkRow.flow == flow)
        if state is not None:
            stmt = stmt.where(LinkRow.state == state)
        stmt = stmt.limit(limit).offset(offset)
        with self._read() as conn:
            return [_link(row) for row in conn.execute(stmt)]

    def set_link_state(self, link_id: int, state: LinkState) -> Link:
        """Mark a link ``active``, ``source-deleted`` or ``pms-deleted``."""
        if state not in LINK_STATES:
            raise ValueError(f"unknown link state {state!r}")
        with self._write() as conn:
            self._bump(conn, self._flows_of(conn, [link_id]))
            row = conn.execute(
                update(LinkRow)
                .where(LinkRow.tenant == self.tenant, LinkRow.id == link_id)
                .values(state=state, updated_at=self.now())
                .returning(*_LINK_COLUMNS)
            ).first()
        if row is None:
            raise UnknownRecord(f"no link {link_id}")
        return _link(row)

    def delete_link(self, link_id: int) -> None:
        """Forget a link (``tolken link`` re-pointing a record); its shadow and history go too."""
        with self._write() as conn:
            self._bump(conn, self._flows_of(conn, [link_id]))
            conn.execute(
                delete(LinkRow).where(LinkRow.tenant == self.tenant, LinkRow.id == link_id)
            )

    def link_counts(self) -> dict[str, dict[str, int]]:
        """``{flow: {state: count}}`` of the tenant's links."""
        stmt = (
            select(LinkRow.flow, LinkRow.state, func.count())
            .where(LinkRow.tenant == self.tenant)
            .group_by(LinkRow.flow, LinkRow.state)
        )
        counts: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for flow, state, n in conn.execute(stmt):
                counts.setdefault(flow, {})[state] = n
        return counts

    # -- shadows -----------------------------------------------------------

    def load_shadow(self, link_id: int) -> Shadow | None:
        """The shadow of a link, or ``None`` before its first synchronisation."""
        return self.load_shadows([link_id]).get(link_id)

    def load_shadows(self, link_ids: Iterable[int]) -> dict[int, Shadow]:
        """Shadows of many links, keyed by link id (links without one left out)."""
        found: dict[int, Shadow] = {}
        with self._read() as conn:
            for batch in chunked(dict.fromkeys(link_ids)):
                stmt = (
                    select(ShadowRow.link_id, *_RAW_SHADOW_COLUMNS)
                    .join(LinkRow, LinkRow.id == ShadowRow.link_id)
                    .where(LinkRow.tenant == self.tenant, ShadowRow.link_id.in_(batch))
                )
                for row in conn.execute(stmt):
                    found[row[0]] = decode_shadow(row[1:])
        return found

    def save_shadow(self, link_id: int, shadow: Shadow) -> None:
        """Replace the shadow of a link."""
        self.save_shadows({link_id: shadow})

    def save_shadows(self, shadows: Mapping[int, Shadow]) -> None:
        """Replace the shadows of many of the tenant's links in batched statements.

        Raises :class:`UnknownRecord` (and writes none) if a link is not the tenant's.
        """
        if not shadows:
            return
        for shadow in shadows.values():
            _check_aware(shadow)
        now = self.now()
        rows = [
            {"link_id": link_id, **shadow._asdict(), "updated_at": now}
            for link_id, shadow in shadows.items()
        ]
        with self._write() as conn:
            self._bump(conn, self._flows_of(conn, shadows))
            insert_fn = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for batch in chunked(rows):
                stmt = insert_fn(ShadowRow)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[ShadowRow.link_id],
                    set_={name: stmt.excluded[name] for name in rows[0] if name != "link_id"},
                )
                conn.execute(stmt, batch)

    def load_flow_state(self, flow: FlowId) -> FlowState:
        """A flow's links with their (lazily decoded) shadows, read by id as they are asked for.

        Nothing is read here: the state queries the store keyed by the ids of the
        page in hand (:meth:`FlowState.prefetch`), so an idle cycle reads nothing
        and memory follows the records a cycle touches, not the flow's links.
        Made inside a transaction, the state reads through it (the caller's own
        uncommitted writes included); made outside, it reads committed rows on
        its own connection, even when first used inside a transaction.
        """
        check_flow(flow)
        joined = self.in_transaction or self._single_connection
        return FlowState(self.tenant, flow, _StoreRows(self, flow, joined=joined))

    @contextmanager
    def _committed(self) -> Iterator[Connection]:
        # A state made outside a transaction may be used inside one later; it
        # must still see only committed rows, so it reads on its own connection.
        with self._connect(read_only=True) as conn, conn.begin():
            yield conn

    def link_map(self, flow: FlowId) -> dict[str, str]:
        """``{poweroffice_id: pms_id}`` for every link of a flow (reference translation)."""
        stmt = select(LinkRow.poweroffice_id, LinkRow.pms_id).where(
            LinkRow.tenant == self.tenant, LinkRow.flow == flow
        )
        with self._read() as conn:
            mapping: dict[str, str] = dict(conn.execute(stmt).tuples().all())
            return mapping

    # -- history -----------------------------------------------------------

    def add_history(
        self,
        link_id: int,
        direction: Direction,
        action: str,
        fields: Mapping[str, Any],
        reason: str,
        *,
        run_id: int | None = None,
    ) -> None:
        """Record one write tolken made for a link (``action``: create, link, update, ...)."""
        self.add_history_many(
            [HistoryEntry(link_id, direction, action, dict(fields), reason, run_id=run_id)]
        )

    def add_history_many(self, entries: Iterable[HistoryEntry]) -> None:
        """Record many writes in batched statements (``at`` defaults to now).

        Raises :class:`UnknownRecord` (and records none) if a link is not the tenant's.
        """
        now = self.now()
        entries = list(entries)
        rows = [
            {
                "link_id": e.link_id,
                "direction": e.direction,
                "action": e.action,
                "fields": dict(e.fields),
                "reason": e.reason,
                "run_id": e.run_id,
                "at": e.at or now,
            }
            for e in entries
        ]
        if not rows:
            return
        with self._write() as conn:
            self._flows_of(conn, (e.link_id for e in entries))
            for batch in chunked(rows):
                conn.execute(insert(HistoryRow), batch)

    def history_for_link(self, link_id: int, *, limit: int | None = None) -> list[HistoryEntry]:
        """The writes made for a link, oldest first (the newest ``limit`` when given)."""
        stmt = (
            select(*_HISTORY_COLUMNS)
            .join(LinkRow, LinkRow.id == HistoryRow.link_id)
            .where(LinkRow.tenant == self.tenant, HistoryRow.link_id == link_id)
            .order_by(HistoryRow.at.desc(), HistoryRow.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [HistoryEntry(*row) for row in reversed(rows)]

    def recent_history(self, flow: FlowId | None = None, *, limit: int = 50) -> list[HistoryEntry]:
        """The newest writes across the tenant's links (the dashboard's activity), newest first."""
        stmt = (
            select(*_HISTORY_COLUMNS)
            .join(LinkRow, LinkRow.id == HistoryRow.link_id)
            .where(LinkRow.tenant == self.tenant)
            .order_by(HistoryRow.at.desc(), HistoryRow.id.desc())
            .limit(limit)
        )
        if flow is not None:
            stmt = stmt.where(LinkRow.flow == flow)
        with self._read() as conn:
            return [HistoryEntry(*row) for row in conn.execute(stmt)]
