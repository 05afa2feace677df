"""Checks shared by the resilience tests: is every record there once, and do both sides agree?

:func:`divergences` compares the two systems and the store after a sync and
returns every problem it finds as one line of text, so a test asserts
``divergences(...) == []`` and a failure shows all of them at once.
:class:`LoseAnswers` wraps a simulator so that some requests are carried
out but their answers lost (a 502), the fault that makes retried creates
dangerous.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine.resolver import LinkResolver
from tolken.mapping import Mapping as SyncMapping
from tolken.mapping import belongs, project, to_pms_flat
from tolken.store import TenantStore

__all__ = [
    "WRITE_METHODS",
    "LoseAnswers",
    "data_writes",
    "divergences",
    "pms_records",
    "po_records",
]

WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")

# The PMS field that names a record for people (duplicates of it mean a record was made twice).
_PMS_KEY = {"departments": "number", "customers": "number", "projects": "code"}


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
) -> list[str]:
    """Everything that is not in sync, one line each (empty when both systems agree).

    Per flow: every PowerOffice record has exactly one link, to a PMS record of
    the flow that exists; no PMS record is linked twice or left unlinked (except
    ``unlinked_pms_allowed`` ids, records made in the PMS alone); no two PMS
    records share a number/code or an ``external_ref``; and every mapped field
    of a linked pair holds the same value on both sides.
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
            if i not in po_linked
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
                if have.get(path) != value:
                    problems.append(
                        f"{flow_id}: {link.poweroffice_id} <-> {link.pms_id} {path}: "
                        f"PowerOffice {value!r} != PMS {have.get(path)!r}"
                    )
    return problems


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
