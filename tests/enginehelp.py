"""The engine's executor and its helpers over the real store and the in-process simulators.

:func:`open_world` wires a :class:`~tolken.engine.SyncEngine` (SQLite store in a
temporary directory) to both simulators through starlette ``TestClient``
transports; :meth:`World.executor` builds the executor of one flow as the
engine does. Shared by the unit tests of ``tolken.engine.executor``,
``services``, ``lifecycle``, ``batch`` and ``settle``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from starlette.testclient import TestClient

from tolken.compose import open_engine
from tolken.config import PMSSettings, PowerOfficeSettings, TolkenConfig
from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine import SyncEngine
from tolken.engine.executor import CycleState, Executor
from tolken.engine.flow import flow_context
from tolken.engine.model import Link, SaveShadow
from tolken.engine.report import CycleReport
from tolken.engine.resolver import LinkResolver
from tolken.engine.services import FlowServices
from tolken.sandbox import credentials
from tolken.sandbox.pms import create_app as create_pms
from tolken.sandbox.poweroffice import create_app as create_poweroffice
from tolken.vocabulary import ConflictPolicy, FlowId

__all__ = [
    "ORG",
    "World",
    "history",
    "linked",
    "open_world",
    "pms_customer",
    "po_customer",
    "stored_shadow",
]

PO_BASE = "http://poweroffice.test"
PMS_BASE = "http://pms.test"
ORG = "987654321"


@dataclass
class World:
    """The engine's store and connectors, wired to in-process simulators."""

    engine: SyncEngine
    po_http: TestClient
    pms_http: TestClient

    @property
    def po(self) -> Connector:
        return self.engine.poweroffice

    @property
    def pms(self) -> Connector:
        return self.engine.pms

    def executor(
        self,
        flow_id: FlowId = "customers",
        *,
        dry_run: bool = False,
        policy: ConflictPolicy = "newest-wins",
        pms: Connector | None = None,
        poweroffice: Connector | None = None,
    ) -> Executor:
        engine = self.engine
        flow = engine.mapping.flow(flow_id)
        services = FlowServices(
            tenant=engine.tenant,
            flow_id=flow_id,
            flow=flow,
            ctx=flow_context(engine.tenant, flow_id, flow, policy, False),
            store=engine.store,
            poweroffice=poweroffice or engine.poweroffice,
            pms=pms or engine.pms,
            resolver=LinkResolver(engine.store),
        )
        report = CycleReport(dry_run=dry_run)
        return Executor(services, CycleState(report.flow(flow_id), report, dry_run=dry_run))

    def writes(self) -> dict[str, int]:
        """Data writes per system since the last reset of the simulators' counters."""
        out = {}
        for name, http in (("poweroffice", self.po_http), ("pms", self.pms_http)):
            counts = http.get("/_sandbox/stats").json()["requests"]
            out[name] = sum(
                n for key, n in counts.items() if key.split(" ")[0] in {"POST", "PATCH", "DELETE"}
            ) - counts.get("POST /OAuth/Token", 0)
        return out


@contextmanager
def open_world(tmp_path: Path) -> Iterator[World]:
    """A fresh store in ``tmp_path`` and fresh simulators; closed on exit."""
    po_http = TestClient(create_poweroffice(rate_limit_per_second=None), base_url=PO_BASE)
    pms_http = TestClient(create_pms(), base_url=PMS_BASE)
    config = TolkenConfig(
        store=f"sqlite:///{tmp_path / 'tolken.db'}",
        poweroffice=PowerOfficeSettings(
            base_url=f"{PO_BASE}/v2",
            token_url=f"{PO_BASE}/OAuth/Token",
            application_key=SecretStr(credentials.APPLICATION_KEY),
            client_key=SecretStr(credentials.CLIENT_KEY),
            subscription_key=SecretStr(credentials.SUBSCRIPTION_KEY),
            requests_per_second=1000.0,
        ),
        pms=PMSSettings(base_url=f"{PMS_BASE}/api/v1", api_key=SecretStr(credentials.PMS_API_KEY)),
    )
    with po_http, pms_http:
        transports = {"poweroffice": po_http._transport, "pms": pms_http._transport}
        with open_engine(config, transports=transports) as engine:
            yield World(engine, po_http, pms_http)


def po_customer(world: World, **fields: Any) -> RemoteRecord:
    body = {"Name": "Acme", "OrganizationNumber": ORG, "EmailAddress": "post@acme.no", **fields}
    return world.po.create("Customers", body, idempotency_key=f"k-{body['Name']}")


def pms_customer(world: World, **fields: Any) -> RemoteRecord:
    body = {"kind": "company", "name": "Acme", "organization_number": ORG, **fields}
    return world.pms.create("customers", body, idempotency_key=f"k-{body['name']}")


def linked(world: World, ex: Executor) -> tuple[RemoteRecord, RemoteRecord, Mapping[str, Any]]:
    """A PowerOffice and a PMS customer that agree, linked with a full shadow."""
    po = po_customer(world)
    values = ex.services.project_po(po)
    assert values is not None
    pms = pms_customer(world, email="post@acme.no", number=str(po.data["Number"]))
    ex.remember("poweroffice", po)
    ex.remember("pms", pms)
    ex.apply([Link(po.id, pms.id, "test"), SaveShadow(po.id, pms.id, values.values)])
    return po, pms, values.values


def stored_shadow(world: World, po_id: str) -> Mapping[str, Any]:
    link = world.engine.store.get_link_by_po("customers", po_id)
    assert link is not None
    shadow = world.engine.store.load_shadow(link.id)
    assert shadow is not None
    return shadow.fields


def history(world: World, po_id: str) -> list[tuple[str, str]]:
    link = world.engine.store.get_link_by_po("customers", po_id)
    assert link is not None
    entries = world.engine.store.history_for_link(link.id)
    return sorted((e.direction, e.action) for e in entries)
