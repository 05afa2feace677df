"""Hypothesis state machine: random edits on both sides, interleaved with sync runs, converge.

The real connectors, engine and SQLite store; the two simulators run
in-process (starlette ``TestClient`` transports) for speed. Each example
starts from empty systems (``/_sandbox/reset``) and a fresh store. Edits:
PowerOffice creates (departments, customers, projects), JSON Patch edits and
archiving in PowerOffice, merge-patch edits and deactivation in the PMS,
same-field conflicts, PMS companies that a later PowerOffice customer
matches by organisation number, and runs under faults (refused requests and
lost answers on both sides). At the end a quiet run (a reconcile, which
is what picks up PowerOffice address-only edits) must leave both sides equal
on every mapped field with no duplicates, and further runs write nothing.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from pydantic import SecretStr
from starlette.testclient import TestClient

from synchelp import LoseAnswers, data_writes, divergences
from tolken.compose import open_engine
from tolken.config import FlowSettings, PMSSettings, PowerOfficeSettings, SyncSettings, TolkenConfig
from tolken.connectors import _http
from tolken.engine import SyncEngine
from tolken.errors import TolkenError
from tolken.sandbox import credentials
from tolken.sandbox.pms import create_app as create_pms
from tolken.sandbox.poweroffice import create_app as create_poweroffice

# Bounded for the default suite (~10 s); TOLKEN_TEST_MACHINE_EXAMPLES=200 explores more.
EXAMPLES = int(os.environ.get("TOLKEN_TEST_MACHINE_EXAMPLES", "15"))
PO_BASE = "http://poweroffice.test"
PMS_BASE = "http://pms.test"
SYSTEMS = ("poweroffice", "pms")

WORDS = ["Fjord", "Nordlys", "Bjørk", "Havbris", "Åsen", "Granli"]
CITIES = [("0150", "Oslo"), ("5003", "Bergen"), ("7011", "Trondheim")]
STATUSES = {"NotStarted": "planned", "Active": "active", "Complete": "completed"}

names = st.builds(lambda a, b: f"{a} {b}", st.sampled_from(WORDS), st.sampled_from(WORDS))
phones = st.integers(0, 99).map(lambda n: f"+47 400 00 {n:03}")
emails = st.sampled_from(WORDS).map(lambda w: f"post@{w.lower().replace('ø', 'o')}.no")
progress = st.integers(0, 20).map(lambda n: n * 5)


class _Systems:
    """Both simulators in-process, shared by every example (reset between them)."""

    def __init__(self) -> None:
        self.po_loss = LoseAnswers(create_poweroffice(rate_limit_per_second=None))
        self.pms_loss = LoseAnswers(create_pms())
        self.po_http = TestClient(self.po_loss, base_url=PO_BASE)
        self.pms_http = TestClient(self.pms_loss, base_url=PMS_BASE)

    def __enter__(self) -> _Systems:
        self.po_http.__enter__()
        self.pms_http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pms_http.__exit__(*exc)
        self.po_http.__exit__(*exc)

    def http(self, system: str) -> TestClient:
        return self.po_http if system == "poweroffice" else self.pms_http

    def control(self, system: str, path: str, body: Any = None) -> Any:
        http = self.http(system)
        response = (
            http.get(f"/_sandbox/{path}")
            if body is None
            else http.post(f"/_sandbox/{path}", json=body)
        )
        response.raise_for_status()
        return response.json()

    def faults(self, seed: int | None) -> None:
        """25 % of requests refused and 10 % of answers lost on both sides; None: no faults."""
        for offset, system in enumerate(SYSTEMS):
            body = {} if seed is None else {"rate": 0.25, "seed": seed + offset}
            self.control(system, "faults", body)
        self.po_loss.configure(0.0 if seed is None else 0.1, (seed or 0) + 2)
        self.pms_loss.configure(0.0 if seed is None else 0.1, (seed or 0) + 3)

    def writes(self) -> dict[str, dict[str, int]]:
        return {s: data_writes(self.control(s, "stats")["requests"]) for s in SYSTEMS}


SYSTEMS_UNDER_TEST: _Systems | None = None


def _config(store: Path, *, create_in_poweroffice: bool = False) -> TolkenConfig:
    return TolkenConfig(
        store=f"sqlite:///{store}",
        poweroffice=PowerOfficeSettings(
            base_url=f"{PO_BASE}/v2",
            token_url=f"{PO_BASE}/OAuth/Token",
            application_key=SecretStr(credentials.APPLICATION_KEY),
            client_key=SecretStr(credentials.CLIENT_KEY),
            subscription_key=SecretStr(credentials.SUBSCRIPTION_KEY),
            requests_per_second=1000.0,
        ),
        pms=PMSSettings(base_url=f"{PMS_BASE}/api/v1", api_key=SecretStr(credentials.PMS_API_KEY)),
        sync=SyncSettings(
            reconcile_every=1000,
            flows={
                flow: FlowSettings(create_in_poweroffice=create_in_poweroffice)
                for flow in ("departments", "customers", "projects")
            },
        ),
    )


Pick = st.integers(min_value=0, max_value=10_000)
"""Which existing record a rule acts on (modulo the count): shrinks well, never runs dry."""


class SyncMachine(RuleBasedStateMachine):
    """Random edits on both systems and sync runs; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        systems = SYSTEMS_UNDER_TEST
        assert systems is not None
        self.systems = systems
        for system in SYSTEMS:
            systems.control(system, "reset", {})
        self.tmp = Path(tempfile.mkdtemp(prefix="tolken-machine-"))
        self.opened = ExitStack()
        self.engine = self._engine(create_in_poweroffice=False)
        self.po = self.engine.poweroffice
        self.pms = self.engine.pms
        self.numbers = itertools.count(1)
        self.departments: list[str] = []
        self.customers: list[str] = []
        self.projects: list[str] = []
        self.waiting_orgs: list[str] = []
        self.pms_only: set[str] = set()

    def teardown(self) -> None:
        try:
            self._check_converged()
        finally:
            self.opened.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------

    def _engine(self, *, create_in_poweroffice: bool) -> SyncEngine:
        """A new engine and its connectors; the ones opened before are closed first."""
        self.opened.close()
        transports = {
            "poweroffice": self.systems.po_http._transport,
            "pms": self.systems.pms_http._transport,
        }
        config = _config(self.tmp / "tolken.db", create_in_poweroffice=create_in_poweroffice)
        return self.opened.enter_context(open_engine(config, transports=transports))

    def _pms_id(self, flow: str, po_id: str) -> str | None:
        return self.engine.store.link_map(flow).get(po_id)  # type: ignore[arg-type]

    def _next(self) -> int:
        return next(self.numbers)

    def _add_department(self, name: str) -> None:
        code = f"D{self._next()}"
        body = {"Code": code, "Name": name, "IsActive": True}
        self.departments.append(self.po.create("Departments", body, idempotency_key=code).id)

    def _add_customer(self, person: bool, name: str, email: str, phone: str) -> None:
        body: dict[str, Any] = {"Name": name, "PhoneNumber": phone, "EmailAddress": email}
        if person:
            first, last = name.split(" ", 1)
            body.update(IsPerson=True, FirstName=first, LastName=last)
        else:
            body.update(OrganizationNumber=f"{980000000 + self._next()}")
        record = self.po.create("Customers", body, idempotency_key=f"m-{self._next()}")
        self.customers.append(record.id)

    def _add_project(self, customer: int, department: int, name: str, status: str) -> None:
        code = f"P{self._next()}"
        body = {
            "Code": code,
            "Name": name,
            "CustomerId": int(self.customers[customer % len(self.customers)]),
            "DepartmentId": int(self.departments[department % len(self.departments)]),
            "StartDate": "2025-03-01",
            "ProjectStatus": status,
            "IsBillable": True,
        }
        self.projects.append(self.po.create("Projects", body, idempotency_key=code).id)

    # -- a synced start -------------------------------------------------------------

    @initialize(create_in_poweroffice=st.booleans())
    def synced_start(self, create_in_poweroffice: bool) -> None:
        """Two departments, three customers and two projects, synced once.

        With ``create_in_poweroffice`` PMS-only customers are created in PowerOffice too.
        """
        if create_in_poweroffice:
            self.engine = self._engine(create_in_poweroffice=True)
            self.po, self.pms = self.engine.poweroffice, self.engine.pms
        for name in ("Hovedkontor", "Bergen"):
            self._add_department(name)
        self._add_customer(False, "Fjord Bygg", "post@fjord.no", "+47 400 00 001")
        self._add_customer(False, "Havbris Data", "post@havbris.no", "+47 400 00 002")
        self._add_customer(True, "Kari Nordmann", "kari@nordmann.no", "+47 400 00 003")
        self._add_project(0, 0, "Nybygg", "Active")
        self._add_project(2, 1, "Service", "NotStarted")
        self.engine.run_cycle()

    # -- PowerOffice edits ----------------------------------------------------------

    @rule(name=names)
    def create_department(self, name: str) -> None:
        self._add_department(name)

    @rule(person=st.booleans(), name=names, email=emails, phone=phones)
    def create_customer(self, person: bool, name: str, email: str, phone: str) -> None:
        self._add_customer(person, name, email, phone)

    @rule(name=names, matched=st.booleans())
    def create_pms_company(self, name: str, matched: bool) -> None:
        """A company in the PMS first; a later PowerOffice customer may match it by org number."""
        org = f"{970000000 + self._next()}"
        record = self.pms.create(
            "customers",
            {"kind": "company", "name": name, "organization_number": org},
            idempotency_key=f"pms-{org}",
        )
        self.pms_only.add(record.id)
        if matched:
            self.waiting_orgs.append(org)

    @rule(name=names, phone=phones)
    def create_pms_person(self, name: str, phone: str) -> None:
        """A PMS-only person no merge rule matches (no e-mail): created in PowerOffice when
        the flow says so, left alone otherwise."""
        first, last = name.split(" ", 1)
        body = {"kind": "person", "name": name, "first_name": first, "last_name": last}
        record = self.pms.create(
            "customers", {**body, "phone": phone}, idempotency_key=f"pms-p{self._next()}"
        )
        self.pms_only.add(record.id)

    @rule(name=names)
    def create_pms_department(self, name: str) -> None:
        """A PMS-only department (its number is PowerOffice's Code when it is created there)."""
        body = {"kind": "department", "number": f"PD{self._next()}", "name": name}
        record = self.pms.create("customers", body, idempotency_key=f"pms-d{self._next()}")
        self.pms_only.add(record.id)

    @rule(customer=Pick, department=Pick, name=names, status=st.sampled_from(["planned", "active"]))
    def create_pms_project(self, customer: int, department: int, name: str, status: str) -> None:
        """A PMS-only project pointing at linked records (PowerOffice needs both references)."""
        customer_id = self._pms_id("customers", self.customers[customer % len(self.customers)])
        dept_id = self._pms_id("departments", self.departments[department % len(self.departments)])
        if customer_id is None or dept_id is None:
            return
        body = {
            "code": f"PP{self._next()}",
            "name": name,
            "customer_id": customer_id,
            "department_id": dept_id,
            "start_date": "2025-05-01",
            "status": status,
            "billable": False,
        }
        record = self.pms.create("projects", body, idempotency_key=f"pms-pp{self._next()}")
        self.pms_only.add(record.id)

    @rule(name=names)
    def create_matching_customer(self, name: str) -> None:
        if self.waiting_orgs:
            body = {"Name": name, "OrganizationNumber": self.waiting_orgs.pop()}
            record = self.po.create("Customers", body, idempotency_key=f"m-{self._next()}")
            self.customers.append(record.id)

    @rule(customer=Pick, department=Pick, name=names, status=st.sampled_from(sorted(STATUSES)))
    def create_project(self, customer: int, department: int, name: str, status: str) -> None:
        self._add_project(customer, department, name, status)

    @rule(pick=Pick, name=names, phone=phones, email=emails)
    def edit_po_customer(self, pick: int, name: str, phone: str, email: str) -> None:
        customer = self.customers[pick % len(self.customers)]
        self.po.update("Customers", customer, {"Name": name, "PhoneNumber": phone})
        self.po.update("Customers", customer, {"EmailAddress": email})

    @rule(pick=Pick, place=st.sampled_from(CITIES))
    def edit_po_address_only(self, pick: int, place: tuple[str, str]) -> None:
        """PowerOffice does not move the customer's timestamp for this one."""
        zip_code, city = place
        customer = self.customers[pick % len(self.customers)]
        self.po.update("Customers", customer, {"MailAddress": {"ZipCode": zip_code, "City": city}})

    @rule(pick=Pick, archived=st.booleans())
    def archive_po_customer(self, pick: int, archived: bool) -> None:
        self.po.update(
            "Customers", self.customers[pick % len(self.customers)], {"IsArchived": archived}
        )

    @rule(pick=Pick, name=names, active=st.booleans())
    def edit_po_department(self, pick: int, name: str, active: bool) -> None:
        department = self.departments[pick % len(self.departments)]
        self.po.update("Departments", department, {"Name": name, "IsActive": active})

    @rule(pick=Pick, customer=Pick, name=names)
    def edit_po_project(self, pick: int, customer: int, name: str) -> None:
        project = self.projects[pick % len(self.projects)]
        changes = {"Name": name, "CustomerId": int(self.customers[customer % len(self.customers)])}
        self.po.update("Projects", project, changes)

    # -- PMS edits (linked records only: the PMS side has no id before a sync) ------

    @rule(pick=Pick, name=names, phone=phones)
    def edit_pms_customer(self, pick: int, name: str, phone: str) -> None:
        pms_id = self._pms_id("customers", self.customers[pick % len(self.customers)])
        if pms_id is not None:
            self.pms.update("customers", pms_id, {"name": name, "phone": phone})

    @rule(pick=Pick, place=st.sampled_from(CITIES), active=st.booleans())
    def edit_pms_customer_address(self, pick: int, place: tuple[str, str], active: bool) -> None:
        pms_id = self._pms_id("customers", self.customers[pick % len(self.customers)])
        if pms_id is not None:
            zip_code, city = place
            changes = {"address": {"postal_code": zip_code, "city": city}, "active": active}
            self.pms.update("customers", pms_id, changes)

    @rule(pick=Pick, done=progress, status=st.sampled_from(sorted(STATUSES.values())))
    def edit_pms_project(self, pick: int, done: int, status: str) -> None:
        pms_id = self._pms_id("projects", self.projects[pick % len(self.projects)])
        if pms_id is not None:
            self.pms.update("projects", pms_id, {"progress": done, "status": status})

    @rule(pick=Pick, customer=Pick, end=st.sampled_from(["2025-06-30", "2026-01-31", None]))
    def edit_pms_project_links(self, pick: int, customer: int, end: str | None) -> None:
        """Point a PMS project at another (linked) customer and move or clear its end date."""
        pms_id = self._pms_id("projects", self.projects[pick % len(self.projects)])
        target = self._pms_id("customers", self.customers[customer % len(self.customers)])
        if pms_id is not None and target is not None:
            self.pms.update("projects", pms_id, {"customer_id": target, "end_date": end})

    @rule(pick=Pick, archived=st.booleans(), in_pms=st.booleans())
    def archive_project(self, pick: int, archived: bool, in_pms: bool) -> None:
        project = self.projects[pick % len(self.projects)]
        pms_id = self._pms_id("projects", project)
        if in_pms and pms_id is not None:
            self.pms.update("projects", pms_id, {"status": "archived" if archived else "active"})
        elif not in_pms:
            status = "Archived" if archived else "Active"
            self.po.update("Projects", project, {"ProjectStatus": status, "EndDate": "2025-12-31"})

    @rule(pick=Pick, in_pms=st.booleans())
    def clear_phone(self, pick: int, in_pms: bool) -> None:
        """Clearing a field after the first link propagates like any other edit."""
        customer = self.customers[pick % len(self.customers)]
        pms_id = self._pms_id("customers", customer)
        if in_pms and pms_id is not None:
            self.pms.update("customers", pms_id, {"phone": None})
        elif not in_pms:
            self.po.update("Customers", customer, {"PhoneNumber": None})

    @rule(pick=Pick, po_name=names, pms_name=names, pms_last=st.booleans())
    def conflicting_names(self, pick: int, po_name: str, pms_name: str, pms_last: bool) -> None:
        """Both sides change the same field before tolken runs: newest-wins settles it."""
        customer = self.customers[pick % len(self.customers)]
        pms_id = self._pms_id("customers", customer)
        if pms_id is None:
            return
        if not pms_last:
            self.pms.update("customers", pms_id, {"name": pms_name})
        self.po.update("Customers", customer, {"Name": po_name})
        if pms_last:
            self.pms.update("customers", pms_id, {"name": pms_name})

    @rule(pick=Pick, po_name=names, pms_name=names)
    def conflicting_department_names(self, pick: int, po_name: str, pms_name: str) -> None:
        department = self.departments[pick % len(self.departments)]
        pms_id = self._pms_id("departments", department)
        if pms_id is not None:
            self.pms.update("customers", pms_id, {"name": pms_name})
            self.po.update("Departments", department, {"Name": po_name})

    # -- sync -----------------------------------------------------------------------

    @rule()
    def sync(self) -> None:
        self.engine.run_cycle()

    @rule()
    def reconcile(self) -> None:
        self.engine.run_cycle(reconcile=True)

    @rule(seed=st.integers(0, 2**16))
    def sync_under_faults(self, seed: int) -> None:
        """A run while requests fail and answers get lost; a run that fails as a whole is fine."""
        self.systems.faults(seed)
        try:
            self.engine.run_cycle()
        except TolkenError:
            pass
        finally:
            self.systems.faults(None)

    @invariant()
    def links_are_one_to_one(self) -> None:
        for flow in self.engine.flows():
            links = self.engine.store.list_links(flow)
            assert len({link.poweroffice_id for link in links}) == len(links)
            assert len({link.pms_id for link in links}) == len(links)

    # -- the end --------------------------------------------------------------------

    def _check_converged(self) -> None:
        self.engine.store.retry_failures_now()
        quiet = self.engine.run_cycle(reconcile=True)
        assert quiet.total("failed") == 0, quiet.to_json()
        problems = divergences(
            self.po,
            self.pms,
            self.engine.store,
            self.engine.mapping,
            unlinked_pms_allowed=self.pms_only,
        )
        assert problems == [], "\n".join(problems)
        for reconcile in (False, True):
            before = self.systems.writes()
            self.engine.run_cycle(reconcile=reconcile)
            assert self.systems.writes() == before, f"a further run wrote (reconcile={reconcile})"


@pytest.fixture(scope="module")
def systems() -> Iterator[_Systems]:
    with _Systems() as running, _http.testing():
        yield running


@pytest.mark.slow
def test_random_edits_on_both_sides_converge_after_a_quiet_run(systems: _Systems) -> None:
    """Random edits on both sides and sync runs end with equal fields, no duplicates, idle runs."""
    global SYSTEMS_UNDER_TEST
    SYSTEMS_UNDER_TEST = systems
    try:
        run_state_machine_as_test(
            SyncMachine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=12,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        SYSTEMS_UNDER_TEST = None
