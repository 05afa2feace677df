"""The executor applies every action the planner can emit, against the real store and sandboxes.

Each test builds an :class:`Executor` for one flow over a SQLite store in a
temporary directory and the two in-process simulators (starlette
``TestClient`` transports), applies a group of actions, and checks what a user
would see: the records in both systems, the links, shadows, history, failures
and conflicts in the store, and the cycle's report.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from tolken.config import PMSSettings, PowerOfficeSettings, TolkenConfig
from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine import SyncEngine
from tolken.engine.executor import MAX_REPLANS, CycleState, Executor
from tolken.engine.flow import flow_context
from tolken.engine.model import (
    Action,
    Ambiguous,
    CreateInPMS,
    CreateInPowerOffice,
    DeactivateInPMS,
    Fetch,
    FieldConflict,
    Link,
    MarkPMSDeleted,
    RecordConflict,
    SaveShadow,
    Skipped,
    Unchanged,
    UpdatePMS,
    UpdatePowerOffice,
    Wait,
)
from tolken.engine.plan import idempotency_key
from tolken.engine.report import CycleReport
from tolken.engine.resolver import LinkResolver
from tolken.engine.services import FlowServices
from tolken.sandbox import credentials
from tolken.sandbox.pms import create_app as create_pms
from tolken.sandbox.poweroffice import create_app as create_poweroffice
from tolken.vocabulary import ConflictPolicy, FlowId

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
    ) -> Executor:
        engine = self.engine
        flow = engine.mapping.flow(flow_id)
        services = FlowServices(
            tenant=engine.tenant,
            flow_id=flow_id,
            flow=flow,
            ctx=flow_context(engine.tenant, flow_id, flow, policy, False),
            store=engine.store,
            poweroffice=engine.poweroffice,
            pms=pms or engine.pms,
            resolver=LinkResolver(engine.store, engine.tenant),
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


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
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
        with SyncEngine.from_config(config, transports=transports) as engine:
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
    link = world.engine.store.get_link_by_po(world.engine.tenant, "customers", po_id)
    assert link is not None
    shadow = world.engine.store.load_shadow(link.id)
    assert shadow is not None
    return shadow.fields


def history(world: World, po_id: str) -> list[tuple[str, str]]:
    link = world.engine.store.get_link_by_po(world.engine.tenant, "customers", po_id)
    assert link is not None
    entries = world.engine.store.history_for_link(link.id)
    return sorted((e.direction, e.action) for e in entries)


# -- creates and links ------------------------------------------------------------------


def test_create_in_pms_makes_the_record_and_links_it(world: World) -> None:
    """A new PowerOffice customer gets a PMS twin, a link, a shadow and a history entry."""
    ex = world.executor()
    po = po_customer(world)
    ex.remember("poweroffice", po)
    projected = ex.services.project_po(po)
    assert projected is not None
    key = idempotency_key(world.engine.tenant, "customers", "poweroffice", po.id)
    ex.apply([CreateInPMS(po.id, projected.values, key)])
    [created] = world.pms.list("customers")
    assert created.data["name"] == "Acme"
    assert created.data["organization_number"] == ORG
    assert stored_shadow(world, po.id)["name"] == "Acme"
    assert history(world, po.id) == [("to_pms", "create")]
    assert ex.state.report.counts["created"] == 1
    assert world.engine.store.pending_creates(world.engine.tenant, "customers") == []


def test_create_in_poweroffice_sends_the_assigned_number_back(world: World) -> None:
    """A PMS-only customer created in PowerOffice gets PowerOffice's customer number back."""
    ex = world.executor()
    pms = pms_customer(world)
    ex.remember("pms", pms)
    projected = ex.services.project_pms(pms)
    assert projected is not None
    key = idempotency_key(world.engine.tenant, "customers", "pms", pms.id)
    ex.apply([CreateInPowerOffice(pms.id, projected.values, key)])
    [created] = world.po.list("Customers")
    assert created.data["Name"] == "Acme"
    number = str(created.data["Number"])
    assert world.pms.get("customers", pms.id).data["number"] == number
    assert stored_shadow(world, created.id)["number"] == number
    assert ex.state.report.counts["created"] == 1


def test_link_stores_the_link_and_why(world: World) -> None:
    """Two matching records are linked, with the rule in the link's history."""
    ex = world.executor()
    po, pms = po_customer(world), pms_customer(world)
    ex.apply([Link(po.id, pms.id, "OrganizationNumber = organization_number")])
    link = world.engine.store.get_link_by_po(world.engine.tenant, "customers", po.id)
    assert link is not None
    assert link.pms_id == pms.id
    assert history(world, po.id) == [("to_pms", "link")]
    assert ex.state.report.counts["linked"] == 1


# -- updates ------------------------------------------------------------------------------


def test_update_pms_writes_the_field_and_moves_the_shadow(world: World) -> None:
    """A PowerOffice edit reaches the PMS record, and the shadow remembers the new value."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    version = world.pms.get("customers", pms.id).version
    ex.apply([UpdatePMS(po.id, pms.id, {"name": "Acme Nord"}, version)])
    assert world.pms.get("customers", pms.id).data["name"] == "Acme Nord"
    assert stored_shadow(world, po.id)["name"] == "Acme Nord"
    assert ("to_pms", "update") in history(world, po.id)
    assert ex.state.report.counts["updated"] == 1


def test_update_poweroffice_writes_the_field_and_moves_the_shadow(world: World) -> None:
    """A PMS edit reaches the PowerOffice record, and the shadow remembers the new value."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    ex.apply([UpdatePowerOffice(po.id, pms.id, {"phone": "+47 400 00 001"})])
    assert world.po.get("Customers", po.id).data["PhoneNumber"] == "+47 400 00 001"
    assert stored_shadow(world, po.id)["phone"] == "+47 400 00 001"
    assert ("to_poweroffice", "update") in history(world, po.id)


def test_stale_pms_version_rereads_and_merges_the_concurrent_edit(world: World) -> None:
    """A PMS record edited while tolken writes it (412) is re-read: both edits survive."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    stale = world.pms.get("customers", pms.id).version
    world.pms.update("customers", pms.id, {"phone": "+47 400 00 002"})  # a person, meanwhile
    ex.remember("poweroffice", world.po.update("Customers", po.id, {"Name": "Acme Nord"}))
    ex.apply([UpdatePMS(po.id, pms.id, {"name": "Acme Nord"}, stale)])
    assert world.pms.get("customers", pms.id).data["name"] == "Acme Nord"
    assert world.po.get("Customers", po.id).data["PhoneNumber"] == "+47 400 00 002"
    assert ex.state.report.counts["failed"] == 0
    assert world.engine.store.list_failures(world.engine.tenant, "customers") == []


class ConcurrentEditor:
    """The real PMS connector, with a person editing the record just before each tolken write."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, resource: str, record_id: str, body: Any, *, version: Any = None) -> Any:
        self.attempts += 1
        self.inner.update(resource, record_id, {"website": f"https://acme.no/{self.attempts}"})
        return self.inner.update(resource, record_id, body, version=version)


def test_a_record_that_keeps_changing_is_parked_after_bounded_rereads(world: World) -> None:
    """A PMS record edited before every write is re-read MAX_REPLANS times, then parked."""
    editor = ConcurrentEditor(world.pms)
    ex = world.executor(pms=typing.cast(Connector, editor))
    po, pms, _ = linked(world, ex)
    version = world.pms.get("customers", pms.id).version
    ex.remember("poweroffice", world.po.update("Customers", po.id, {"Name": "Acme Nord"}))
    ex.apply([UpdatePMS(po.id, pms.id, {"name": "Acme Nord"}, version)])
    assert editor.attempts == MAX_REPLANS + 1
    [failure] = world.engine.store.list_failures(world.engine.tenant, "customers")
    assert failure.record_id == po.id
    assert "kept changing" in failure.message
    assert ex.state.report.counts["failed"] == 1


def test_fetch_reads_the_missing_side_and_plans_the_pair_again(world: World) -> None:
    """A hand-made link without a shadow reads the PMS side and fills its empty fields."""
    ex = world.executor()
    po = po_customer(world)
    pms = pms_customer(world)  # no e-mail yet
    ex.remember("poweroffice", po)
    ex.apply([Link(po.id, pms.id, "test")])
    ex.apply([Fetch(po.id, pms.id, "pms", "no last synchronised value")])
    assert world.pms.get("customers", pms.id).data["email"] == "post@acme.no"
    assert stored_shadow(world, po.id)["email"] == "post@acme.no"


def test_save_shadow_writes_nothing_to_either_system(world: World) -> None:
    """Values both sides already agree on move into the shadow without a request."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    before = world.writes()
    ex.apply([SaveShadow(po.id, pms.id, {"name": "Acme"})])
    assert world.writes() == before
    assert stored_shadow(world, po.id)["name"] == "Acme"


def test_unchanged_remembers_the_version_seen(world: World) -> None:
    """An unchanged pair (an echo) stores the PMS version seen, so it is not an edit next time."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    world.pms.update("customers", pms.id, {"name": "Acme X"})
    moved = world.pms.update("customers", pms.id, {"name": "Acme"})  # back: same values
    assert moved.version != pms.version
    later = world.executor()
    later.remember("pms", moved)
    later.apply([Unchanged(po.id, pms.id)])
    link = world.engine.store.get_link_by_po(world.engine.tenant, "customers", po.id)
    assert link is not None
    shadow = world.engine.store.load_shadow(link.id)
    assert shadow is not None
    assert shadow.pms_version == moved.version
    assert later.state.report.counts["unchanged"] == 1


# -- notes: conflicts, ambiguity, waiting, skipping --------------------------------------


def test_a_conflict_is_recorded_once(world: World) -> None:
    """Both values of a conflict are kept, and re-planning the same pair does not repeat it."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    conflict = FieldConflict("name", "Acme A", "Acme B", "Acme", "poweroffice", "newest-wins")
    ex.apply([RecordConflict(po.id, pms.id, conflict)])
    ex.apply([RecordConflict(po.id, pms.id, conflict)])
    [stored] = world.engine.store.list_conflicts(world.engine.tenant, "customers")
    assert (stored.poweroffice_value, stored.pms_value, stored.winner) == (
        "Acme A",
        "Acme B",
        "poweroffice",
    )
    assert ex.state.report.counts["conflicts"] == 2


def test_ambiguous_match_is_reported_and_parked_with_advice(world: World) -> None:
    """A record matching several candidates is listed, parked, and says to use tolken link."""
    ex = world.executor()
    ex.apply([Ambiguous("poweroffice", "7", ("m1", "m2"), "OrganizationNumber")])
    [failure] = world.engine.store.list_failures(world.engine.tenant, "customers")
    assert failure.record_id == "7"
    assert "tolken link" in failure.message
    assert [m.candidates for m in ex.state.cycle.ambiguous] == [("m1", "m2")]
    assert ex.state.report.counts["ambiguous"] == 1


def test_wait_keeps_the_record_for_the_cursor(world: World) -> None:
    """A record waiting for a reference is counted and held back from the cursor."""
    ex = world.executor("projects")
    ex.apply([Wait("poweroffice", "42", "waiting for a link")])
    ex.apply([Wait("pms", "p9", "waiting for a link")])
    assert ex.state.waiting_po == {"42"}
    assert ex.state.waiting_pms == {"p9"}
    assert ex.state.report.counts["waiting"] == 2


def test_skipped_is_counted_and_writes_nothing(world: World) -> None:
    """A record the flow leaves alone costs no request and no store row."""
    ex = world.executor()
    before = world.writes()
    ex.apply([Skipped(None, "m1", "PMS-only record")])
    assert world.writes() == before
    assert ex.state.report.counts["skipped"] == 1
    assert world.engine.store.list_links(world.engine.tenant, "customers") == []


# -- deletes ------------------------------------------------------------------------------


def test_deactivate_only_after_poweroffice_answers_404(world: World) -> None:
    """A PowerOffice record missing from a listing but still there is left alone; a gone one
    makes its PMS twin inactive and ends the link."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    ex.apply([DeactivateInPMS(po.id, pms.id, {"active": False})])
    assert world.pms.get("customers", pms.id).data["active"] is True
    world.po.delete("Customers", po.id)
    ex.apply([DeactivateInPMS(po.id, pms.id, {"active": False})])
    assert world.pms.get("customers", pms.id).data["active"] is False
    link = world.engine.store.get_link_by_po(world.engine.tenant, "customers", po.id)
    assert link is not None
    assert link.state == "source-deleted"
    assert ex.state.report.counts["deactivated"] == 1


def test_pms_delete_marks_the_link_and_leaves_poweroffice_alone(world: World) -> None:
    """A PMS delete (confirmed by a 404) marks the link; the PowerOffice record stays."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    ex.apply([MarkPMSDeleted(po.id, pms.id, confirm_by_get=True)])
    link = world.engine.store.get_link_by_po(world.engine.tenant, "customers", po.id)
    assert link is not None
    assert link.state == "active"
    world.pms.delete("customers", pms.id)
    ex.apply([MarkPMSDeleted(po.id, pms.id, confirm_by_get=True)])
    link = world.engine.store.get_link_by_po(world.engine.tenant, "customers", po.id)
    assert link is not None
    assert link.state == "pms-deleted"
    assert world.po.get("Customers", po.id).data["Name"] == "Acme"
    assert ex.state.report.counts["pms_deleted"] == 1


# -- failures and dry runs ----------------------------------------------------------------


def test_a_refused_create_is_parked_and_the_run_goes_on(world: World) -> None:
    """A project without a code cannot be created in PowerOffice: it is parked with why."""
    ex = world.executor("projects")
    ex.apply([CreateInPowerOffice("p1", {"name": "No code"}, "tk-key")])
    [failure] = world.engine.store.list_failures(world.engine.tenant, "projects")
    assert (failure.side, failure.record_id) == ("pms", "p1")
    assert "code" in failure.message
    assert ex.state.report.counts["failed"] == 1
    assert ("pms", "p1") in ex.state.open_failures


def test_dry_run_plans_every_write_and_makes_none(world: World) -> None:
    """``tolken plan`` lists the create, link and update it would make, and writes nothing."""
    ex = world.executor(dry_run=True)
    po = po_customer(world)
    before = world.writes()
    actions: list[Action] = [
        CreateInPMS(po.id, {"name": "Acme"}, "tk-1"),
        Link(po.id, "m1", "test"),
        UpdatePMS(po.id, "m1", {"name": "Acme Nord"}, 1),
    ]
    for action in actions:
        ex.apply([action])
    assert world.writes() == before
    assert [p.kind for p in ex.state.cycle.planned] == ["create-in-pms", "link", "update-pms"]
    assert world.engine.store.list_links(world.engine.tenant, "customers") == []
