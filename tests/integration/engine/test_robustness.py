"""Crash-safe creates, 412 re-read and re-merge, and convergence under injected faults."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from integration.sync_harness import Sandbox
from tolken.compose import open_engine
from tolken.connectors.base import RemoteRecord
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.engine import SyncEngine
from tolken.engine.plan import idempotency_key
from tolken.errors import TolkenError
from tolken.store import open_store
from tolken.vocabulary import FlowId

# The PowerOffice resource each flow reads.
PO_RESOURCES: dict[FlowId, str] = {
    "departments": "Departments",
    "customers": "Customers",
    "projects": "Projects",
}


@pytest.fixture
def sb(sb: Sandbox) -> Iterator[Sandbox]:
    """The shared loopback sandbox (conftest.py), with injected faults cleared afterwards."""
    yield sb
    sb.control("poweroffice", "faults", {})
    sb.control("pms", "faults", {})


def test_a_create_interrupted_after_its_post_is_found_not_repeated(sb: Sandbox) -> None:
    """A pending create whose POST reached the PMS before a crash is linked, not created twice."""
    cust = sb.po_create("Customers", {"Name": "Acme AS"})
    key = idempotency_key("default", "customers", "poweroffice", cust)
    config = sb.config()
    with open_store(config.store) as db:
        store = db.for_tenant("default")
        # The state a crash leaves behind: the row committed, the POST done, no link yet.
        store.add_pending_create("customers", "pms", cust, key)
        with sb.pms() as pms:
            made = pms.create(
                "customers", {"kind": "company", "name": "Acme AS"}, idempotency_key=key
            )
        with open_engine(config, store=db) as engine:
            report = engine.run_cycle()
            links = engine.store.link_map("customers")
        pending = store.get_pending_create(key)
    assert report.flows["customers"].counts["created"] == 1
    assert links == {cust: made.id}
    assert len(sb.pms_list("customers")) == 1
    assert pending is not None
    assert (pending.state, pending.created_id) == ("done", made.id)


class _RacingPMS(PMSClient):
    """A PMS client whose first update races a concurrent edit by someone else."""

    def __init__(self, *args: Any, race: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.race: Mapping[str, Any] | None = race
        self.stale = 0

    def update(
        self,
        resource: str,
        record_id: str,
        changes: Mapping[str, Any],
        *,
        version: int | None = None,
    ) -> RemoteRecord:
        if self.race is not None:
            # Someone edits the record between tolken's read and its write.
            super().update(resource, record_id, self.race)
            self.race = None
            self.stale += 1
        return super().update(resource, record_id, changes, version=version)


def test_a_stale_pms_version_is_re_read_and_re_merged(sb: Sandbox) -> None:
    """A 412 on If-Match makes tolken re-read the record and keep both edits."""
    cust = sb.po_create("Customers", {"Name": "Acme AS", "PhoneNumber": "1"})
    config = sb.config()
    with open_engine(config) as first:
        first.run_cycle()
        pms_id = first.store.link_map("customers")[cust]
    sb.po_update("Customers", cust, {"Name": "Acme Holding AS"})
    with (
        open_store(config.store) as store,
        PowerOfficeClient(config.poweroffice) as po,
        _RacingPMS(config.pms, race={"website": "https://acme.no"}) as pms,
    ):
        engine = SyncEngine(config, store, po, pms)
        report = engine.run_cycle()
    assert pms.stale == 1
    assert report.flows["customers"].counts["failed"] == 0
    record = sb.pms_get("customers", pms_id)
    assert (record["name"], record["website"]) == ("Acme Holding AS", "https://acme.no")
    assert sb.po_get("Customers", cust)["WebsiteUrl"] == "https://acme.no"


@pytest.mark.slow
def test_repeated_runs_converge_under_faults_with_every_record_once(sb: Sandbox) -> None:
    """With 25 % of requests on both sides answered 429/5xx, a few runs sync everything once."""
    sb.control("poweroffice", "seed", {"departments": 4, "customers": 30, "projects": 12})
    faults = {"rate": 0.25, "statuses": [429, 500, 502, 503], "seed": 7}
    sb.control("poweroffice", "faults", faults)
    sb.control("pms", "faults", faults)
    config = sb.config()
    with open_engine(config) as engine:
        for _ in range(6):
            engine.store.retry_failures_now()
            try:
                report = engine.run_cycle()
            except TolkenError:  # a fatal streak under faults: the next run carries on
                continue
            if report.total("failed") == 0 and report.total("waiting") == 0:
                break
        sb.control("poweroffice", "faults", {})
        sb.control("pms", "faults", {})
        engine.store.retry_failures_now()
        engine.run_cycle()
        failures = engine.store.list_failures()
        links = {f: engine.store.link_map(f) for f in engine.flows()}
    assert failures == []
    po = {f: sb.po_list(r) for f, r in PO_RESOURCES.items()}
    for flow, records in po.items():
        assert sorted(links[flow]) == sorted(str(r["Id"]) for r in records), flow
    pms_customers = sb.pms_list("customers")
    assert len(pms_customers) == len(po["departments"]) + len(po["customers"])
    assert len(sb.pms_list("projects")) == len(po["projects"])
    assert len({r["external_ref"] for r in pms_customers}) == len(pms_customers)


def test_the_watch_loop_reconciles_every_n_cycles_and_stops_on_request(sb: Sandbox) -> None:
    """`reconcile_every: 2`: every second cycle of the loop is a reconcile; a stop ends it."""
    sb.po_create("Customers", {"Name": "Acme AS"})
    seen: list[bool] = []
    with sb.engine(reconcile_every=2, interval_seconds=0.01) as engine:

        def on_cycle(report: Any) -> None:
            seen.append(report.reconciled)
            if len(seen) == 4:
                engine.request_stop()

        engine.watch(on_cycle=on_cycle)
        runs = engine.store.last_runs()
    assert seen == [False, True, False, True]
    assert len(runs) == 4
    assert {run.status for run in runs} == {"ok"}


def test_the_watch_loop_can_start_with_a_reconcile(sb: Sandbox) -> None:
    """`sync --watch --reconcile`: the first cycle is a reconcile, counted in the schedule."""
    sb.po_create("Customers", {"Name": "Acme AS"})
    seen: list[bool] = []
    with sb.engine(reconcile_every=3, interval_seconds=0.01) as engine:

        def on_cycle(report: Any) -> None:
            seen.append(report.reconciled)
            if len(seen) == 3:
                engine.request_stop()

        engine.watch(on_cycle=on_cycle, reconcile_first=True)
    assert seen == [True, False, True]
