"""Checks shared by the resilience tests: is every record there once, and do both sides agree?

:func:`divergences` compares the two systems and the store after a sync and
returns every problem it finds as one line of text, so a test asserts
``divergences(...) == []`` and a failure shows all of them at once.
:class:`LoseAnswers` wraps a simulator so that some requests are carried
out but their answers lost (a 502), the fault that makes retried creates
dangerous. :class:`CrashSwitch` kills one cycle of an engine (opened with
:func:`tolken.compose.open_engine` over its transports) at a chosen write
the way a SIGKILL would, and :class:`EditLedger` remembers the last value a
person wrote to each field on each side, for the no-lost-edit check.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from sqlalchemy import Engine as DatabaseEngine
from sqlalchemy import event, make_url
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine.merge import values_equal
from tolken.engine.resolver import LinkResolver
from tolken.mapping import Mapping as SyncMapping
from tolken.mapping import belongs, project, to_pms_flat
from tolken.store import ConflictRecord, TenantStore
from tolken.vocabulary import Side

__all__ = [
    "WRITE_METHODS",
    "Crash",
    "CrashMoment",
    "CrashSwitch",
    "EditLedger",
    "FieldKey",
    "LoseAnswers",
    "conflicts_by_field",
    "data_writes",
    "divergences",
    "linked_fields",
    "pms_records",
    "po_records",
]

WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")

# The PMS field that names a record for people (duplicates of it mean a record was made twice).
_PMS_KEY = {"departments": "number", "customers": "number", "projects": "code"}


FieldKey = tuple[str, str, str]
"""One mapped field of one linked pair: ``(flow, PowerOffice id, PMS path)``."""


def is_data_write(request: httpx.Request) -> bool:
    """A request that changes data (token requests and the sandbox control surface are not)."""
    path = request.url.path
    return (
        request.method in WRITE_METHODS
        and "/OAuth/" not in path
        and not path.startswith("/_sandbox")
    )


def data_writes(stats: Mapping[str, int]) -> dict[str, int]:
    """The data writes in a ``/_sandbox/stats`` request count (token requests are not writes)."""
    return {
        key: count
        for key, count in stats.items()
        if key.split(" ", 1)[0] in WRITE_METHODS and "/OAuth/" not in key and count
    }


def po_records(po: Connector, mapping: SyncMapping, flow_id: str) -> dict[str, RemoteRecord]:
    """Every PowerOffice record of a flow, by id."""
    return {r.id: r for r in po.list(mapping.flow(flow_id).poweroffice)}


def pms_records(pms: Connector, mapping: SyncMapping, flow_id: str) -> dict[str, RemoteRecord]:
    """Every PMS record that belongs to a flow (its ``pms_filter``), by id."""
    flow = mapping.flow(flow_id)
    return {r.id: r for r in pms.list(flow.pms) if belongs(flow, r.data)}


def divergences(
    po: Connector,
    pms: Connector,
    store: TenantStore,
    mapping: SyncMapping,
    *,
    unlinked_pms_allowed: Collection[str] = (),
    unlinked_po_allowed: Collection[str] = (),
    differing_allowed: Collection[FieldKey] = (),
) -> list[str]:
    """Everything that is not in sync, one line each (empty when both systems agree).

    Per flow: every PowerOffice record has exactly one link (except
    ``unlinked_po_allowed`` ids, records with ambiguous matches), to a PMS
    record of the flow that exists; no PMS record is linked twice or left
    unlinked (except ``unlinked_pms_allowed`` ids, records made in the PMS
    alone); no two PMS records share a number/code or an ``external_ref``; and
    every mapped field of a linked pair holds the same value on both sides
    (except ``differing_allowed`` fields, conflicts parked for a person).
    """
    problems: list[str] = []
    resolver = LinkResolver(store)
    for flow_id in mapping.order():
        flow = mapping.flow(flow_id)
        po_by_id = po_records(po, mapping, flow_id)
        pms_by_id = pms_records(pms, mapping, flow_id)
        links = store.list_links(flow_id)
        po_linked = Counter(link.poweroffice_id for link in links)
        pms_linked = Counter(link.pms_id for link in links)
        problems += [
            f"{flow_id}: PowerOffice {i} linked {n} times" for i, n in po_linked.items() if n > 1
        ]
        problems += [f"{flow_id}: PMS {i} linked {n} times" for i, n in pms_linked.items() if n > 1]
        problems += [
            f"{flow_id}: PowerOffice {i} ({_name(r.data, 'Name')}) has no PMS record"
            for i, r in po_by_id.items()
            if i not in po_linked and i not in unlinked_po_allowed
        ]
        problems += [
            f"{flow_id}: PMS {i} ({_name(r.data, 'name')}) is not linked"
            for i, r in pms_by_id.items()
            if i not in pms_linked and i not in unlinked_pms_allowed
        ]
        for key in (_PMS_KEY[flow_id], "external_ref"):
            seen = Counter(r.data.get(key) for r in pms_by_id.values() if r.data.get(key))
            problems += [
                f"{flow_id}: {n} PMS records with {key} {value!r}"
                for value, n in seen.items()
                if n > 1
            ]
        for link in links:
            po_record, pms_record = po_by_id.get(link.poweroffice_id), pms_by_id.get(link.pms_id)
            if po_record is None or pms_record is None:
                missing = "PowerOffice" if po_record is None else "PMS"
                problems.append(
                    f"{flow_id}: link {link.poweroffice_id} <-> {link.pms_id}: "
                    f"the {missing} record is missing"
                )
                continue
            want = to_pms_flat(flow, po_record.data, resolver)
            have = project(flow, pms_record.data)
            for path, value in sorted(want.items()):
                if (flow_id, link.poweroffice_id, path) in differing_allowed:
                    continue
                if have.get(path) != value:
                    problems.append(
                        f"{flow_id}: {link.poweroffice_id} <-> {link.pms_id} {path}: "
                        f"PowerOffice {value!r} != PMS {have.get(path)!r}"
                    )
    return problems


def linked_fields(
    po: Connector, pms: Connector, store: TenantStore, mapping: SyncMapping
) -> dict[FieldKey, tuple[Any, Any]]:
    """Every mapped field of every linked pair: ``(PowerOffice value, PMS value)``, PMS-path space.

    A reference to a record that is not linked yet is left out.
    """
    values: dict[FieldKey, tuple[Any, Any]] = {}
    resolver = LinkResolver(store)
    for flow_id in mapping.order():
        flow = mapping.flow(flow_id)
        po_by_id = po_records(po, mapping, flow_id)
        pms_by_id = pms_records(pms, mapping, flow_id)
        for link in store.list_links(flow_id):
            po_record, pms_record = po_by_id.get(link.poweroffice_id), pms_by_id.get(link.pms_id)
            if po_record is None or pms_record is None:
                continue
            want = to_pms_flat(flow, po_record.data, resolver, unresolved=set())
            have = project(flow, pms_record.data)
            for path, value in want.items():
                values[(flow_id, link.poweroffice_id, path)] = (value, have.get(path))
    return values


def conflicts_by_field(store: TenantStore) -> dict[FieldKey, list[ConflictRecord]]:
    """Every recorded conflict (settled or parked), by the field of the pair it was about."""
    po_ids = {link.id: link.poweroffice_id for link in store.list_links()}
    found: dict[FieldKey, list[ConflictRecord]] = defaultdict(list)
    for conflict in store.list_conflicts():
        found[(conflict.flow, po_ids[conflict.link_id], conflict.field)].append(conflict)
    return dict(found)


@dataclass
class _Written:
    value: Any
    delivered: bool = False


class EditLedger:
    """The last value a person wrote to each field on each side, and whether it got across.

    The no-lost-edit rule: at the end every value in the ledger is on both
    sides, or is the losing value of a recorded conflict. A value counts as
    *delivered* once both sides held it at an observation; a later write on
    the other side then supersedes it (that edit came after, and wins by
    being later, not by a conflict). Two writes not yet delivered are
    concurrent: both stay, and a conflict must decide between them.

    A person who puts back, before it got across, the value both sides last
    held has undone their edit, not made one: the merge is three-way against
    that value (DESIGN §4), so that side shows no change and an edit on the
    other side is the one that must arrive. The undone edit leaves the ledger.
    """

    def __init__(self) -> None:
        self._last: dict[FieldKey, dict[Side, _Written]] = {}
        self._agreed: dict[FieldKey, Any] = {}  # the value both sides held at the last look

    def wrote(self, side: Side, flow: str, po_id: str, values: Mapping[str, Any]) -> None:
        """A person wrote ``values`` (``{pms_path: value}``) to the pair's record on ``side``."""
        other: Side = "pms" if side == "poweroffice" else "poweroffice"
        for path, value in values.items():
            key = (flow, po_id, path)
            entry = self._last.setdefault(key, {})
            mine = entry.get(side)
            if (
                mine is not None
                and not mine.delivered
                and key in self._agreed
                and values_equal(self._agreed[key], value)
            ):
                del entry[side]  # undone before it got across
                continue
            if other in entry and entry[other].delivered:
                del entry[other]
            entry[side] = _Written(value)

    def replaced(self, side: Side, flow: str, po_id: str, paths: Collection[str]) -> None:
        """A person wrote ``paths`` on ``side`` with a value not nameable in PMS-path space yet.

        (A reference to a record not linked yet.) The value is not checked here
        (the end's field comparison does that), but it supersedes, as any later
        edit does, the earlier value of the same side and a delivered value of
        the other side.
        """
        other: Side = "pms" if side == "poweroffice" else "poweroffice"
        for path in paths:
            entry = self._last.get((flow, po_id, path), {})
            entry.pop(side, None)
            if other in entry and entry[other].delivered:
                del entry[other]

    def observe(self, now: Mapping[FieldKey, tuple[Any, Any]]) -> None:
        """Mark every written value that both sides hold ``now`` (:func:`linked_fields`)."""
        for key, (po_value, pms_value) in now.items():
            if values_equal(po_value, pms_value):
                self._agreed[key] = po_value
        for key, entry in self._last.items():
            for written in entry.values():
                if key in now and _both_hold(now[key], written.value):
                    written.delivered = True

    def lost(
        self,
        now: Mapping[FieldKey, tuple[Any, Any]],
        conflicts: Mapping[FieldKey, list[ConflictRecord]],
    ) -> list[str]:
        """Each written value neither on both sides ``now`` nor a recorded conflict's loser."""
        problems = []
        for key, entry in sorted(self._last.items()):
            for side, written in sorted(entry.items()):
                if key in now and _both_hold(now[key], written.value):
                    continue
                if any(_lost_to(c, side, written.value) for c in conflicts.get(key, ())):
                    continue
                flow, po_id, path = key
                problems.append(
                    f"{flow} {po_id} {path}: {written.value!r} written in {side} is lost "
                    f"(now PowerOffice {now.get(key, (None, None))[0]!r}, "
                    f"PMS {now.get(key, (None, None))[1]!r})"
                )
        return problems


def _both_hold(values: tuple[Any, Any], value: Any) -> bool:
    return values_equal(values[0], value) and values_equal(values[1], value)


def _lost_to(conflict: ConflictRecord, side: Side, value: Any) -> bool:
    """True when ``value`` on ``side`` is what ``conflict`` recorded as not kept (or parked)."""
    held = conflict.poweroffice_value if side == "poweroffice" else conflict.pms_value
    return conflict.winner != side and values_equal(held, value)


class Crash(Exception):
    """The death of the tolken process, simulated (the product never raises or catches it)."""


CrashMoment = Literal["before", "after"]


class CrashSwitch:
    """Kills an engine at its k-th data write, leaving what a SIGKILL there would leave.

    Build the engine over :meth:`transports` (real loopback HTTP) and
    :meth:`arm` the switch. With ``"before"`` the k-th write never leaves (a
    pending-create row committed before its POST stays behind); with
    ``"after"`` the remote system carries it out and answers, and the engine
    dies before it stores anything about it. From then on, until
    :meth:`revive`, every request of that engine and every statement on its
    store raises :class:`Crash`, so no error handler or ``finally`` commits
    what a killed process could not. ``before_write`` (optional) runs just
    before each data write, e.g. a person's edit racing tolken's.
    """

    def __init__(self, store_url: str) -> None:
        self._database = make_url(store_url).database
        self._left: int | None = None
        self._moment: CrashMoment = "after"
        self.dead = False
        self.before_write: Callable[[httpx.Request], None] | None = None
        event.listen(DatabaseEngine, "before_cursor_execute", self._statement)

    def close(self) -> None:
        event.remove(DatabaseEngine, "before_cursor_execute", self._statement)

    def transports(self) -> dict[str, httpx.BaseTransport]:
        """Fresh loopback transports for a new engine, one per system."""
        return {system: _SwitchedTransport(self) for system in ("poweroffice", "pms")}

    def arm(self, write: int, moment: CrashMoment) -> None:
        """Die at the ``write``-th data write from now (1 is the next one)."""
        self._left, self._moment = write, moment

    def revive(self) -> None:
        """A new process: disarmed and alive (build a new engine on the same store)."""
        self._left, self.dead = None, False

    def request(self, request: httpx.Request) -> bool:
        """Called before each request goes out; True: let it through, then die."""
        if self.dead:
            raise Crash("the process was killed")
        if not is_data_write(request):
            return False
        if self.before_write is not None:
            self.before_write(request)
        if self._left is None:
            return False
        self._left -= 1
        if self._left > 0:
            return False
        self._left, self.dead = None, True
        if self._moment == "before":
            raise Crash(f"killed before {request.method} {request.url.path}")
        return True

    def _statement(self, conn: Any, *_args: Any) -> None:
        if self.dead and conn.engine.url.database == self._database:
            raise Crash("the process was killed")


class _SwitchedTransport(httpx.BaseTransport):
    """Real loopback HTTP, through a :class:`CrashSwitch`."""

    def __init__(self, switch: CrashSwitch) -> None:
        self._switch = switch
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        die_after = self._switch.request(request)
        response = self._inner.handle_request(request)
        if die_after:
            response.read()
            response.close()
            raise Crash(
                f"killed after {request.method} {request.url.path} ({response.status_code})"
            )
        return response

    def close(self) -> None:
        self._inner.close()


class LoseAnswers:
    """ASGI wrapper: with probability ``rate`` the app handles the request, the answer is lost.

    The client gets a 502 for work that was done, as when a gateway or the
    network drops the response. ``/_sandbox/*`` is never touched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.rate = 0.0
        self.lost = 0
        self._random = random.Random(0)

    def configure(self, rate: float, seed: int) -> None:
        self.rate, self.lost, self._random = rate, 0, random.Random(seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or str(scope["path"]).startswith("/_sandbox")
            or self._random.random() >= self.rate
        ):
            await self.app(scope, receive, send)
            return

        async def swallow(_message: Message) -> None:
            return None

        await self.app(scope, receive, swallow)
        self.lost += 1
        await send(
            {
                "type": "http.response.start",
                "status": 502,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"message": "answer lost"}'})


def _name(data: Mapping[str, Any], key: str) -> str:
    return str(data.get(key) or data.get(key.lower()) or "")
