"""Hypothesis state machine: the real engine, random edits on both sides, crashes, convergence.

The product's own engine (``SyncEngine.run_cycle``: planner, executor,
connectors, SQLite store) against both simulators served over real loopback
HTTP (``tests/loopback.py``). Each example starts from empty systems
(``/_sandbox/reset``) and a fresh store, with a conflict policy drawn for it.
Steps: PowerOffice creates (departments, customers, projects), JSON Patch
edits and archiving in PowerOffice, merge-patch edits and deactivation in the
PMS, same-field conflicts, PMS records made alone (some a later PowerOffice
customer matches by organisation number, some matching ambiguously), runs,
reconciles, runs under faults (refused requests and lost answers), runs in
which a person edits a PMS record between tolken's read and its write (412),
and runs killed at their k-th write (the write done or not, nothing after it
stored: what a SIGKILL leaves) followed by a fresh engine on the same store.

At the end a quiet run (a reconcile, which is also what picks up PowerOffice
address-only edits) must leave both sides equal on every mapped field (but
conflicts parked for a person) with no duplicates; no value a person wrote
may be lost unless the store recorded it as a conflict's loser; and a
further run, and a further reconcile, write nothing (``/_sandbox/stats``).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from pydantic import SecretStr

from loopback import serve
from synchelp import (
    Crash,
    CrashMoment,
    CrashSwitch,
    EditLedger,
    LoseAnswers,
    conflicts_by_field,
    data_writes,
    divergences,
    linked_fields,
)
from tolken.compose import open_engine
from tolken.config import FlowSettings, PMSSettings, PowerOfficeSettings, SyncSettings, TolkenConfig
from tolken.connectors import _http
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.connectors.ratelimit import clear_shared_limiters
from tolken.engine import SyncEngine
from tolken.engine.merge import values_equal
from tolken.engine.model import ConflictPolicy
from tolken.engine.resolver import LinkResolver
from tolken.errors import TolkenError
from tolken.mapping import project, to_pms_flat
from tolken.sandbox import credentials
from tolken.sandbox.pms import create_app as create_pms
from tolken.sandbox.poweroffice import create_app as create_poweroffice

# Bounded for the default suite (under a minute); TOLKEN_TEST_MACHINE_EXAMPLES=200 explores more.
EXAMPLES = int(os.environ.get("TOLKEN_TEST_MACHINE_EXAMPLES", "15"))
SYSTEMS = ("poweroffice", "pms")
POLICIES: list[ConflictPolicy] = ["newest-wins", "poweroffice-wins", "pms-wins", "manual"]

WORDS = ["Fjord", "Nordlys", "Bjørk", "Havbris", "Åsen", "Granli"]
CITIES = [("0150", "Oslo"), ("5003", "Bergen"), ("7011", "Trondheim")]
STATUSES = {"NotStarted": "planned", "Active": "active", "Complete": "completed"}
PMS_RECORD = re.compile(r"/api/v1/(customers|projects)/([^/]+)$")

names = st.builds(lambda a, b: f"{a} {b}", st.sampled_from(WORDS), st.sampled_from(WORDS))
phones = st.integers(0, 99).map(lambda n: f"+47 400 00 {n:03}")
emails = st.sampled_from(WORDS).map(lambda w: f"post@{w.lower().replace('ø', 'o')}.no")
progress = st.integers(0, 20).map(lambda n: n * 5)


class _Systems:
    """Both simulators on loopback ports, shared by every example (reset between them)."""

    def __init__(self, stack: ExitStack) -> None:
        self.po_loss = LoseAnswers(create_poweroffice(rate_limit_per_second=None))
        self.pms_loss = LoseAnswers(create_pms())
        self.urls = {
            "poweroffice": stack.enter_context(serve(self.po_loss)),
            "pms": stack.enter_context(serve(self.pms_loss)),
        }

    def control(self, system: str, path: str, body: Any = None) -> Any:
        url = f"{self.urls[system]}/_sandbox/{path}"
        response = httpx.get(url) if body is None else httpx.post(url, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def faults(self, seed: int | None) -> None:
        """25 % of requests refused and 10 % of answers lost on both sides; None: no faults."""
        for offset, system in enumerate(SYSTEMS):
            body = {} if seed is None else {"rate": 0.25, "seed": seed + offset}
            self.control(system, "faults", body)
        self.po_loss.configure(0.0 if seed is None else 0.1, (seed or 0) + 2)
        self.pms_loss.configure(0.0 if seed is None else 0.1, (seed or 0) + 3)

    def writes(self) -> dict[str, dict[str, int]]:
        return {s: data_writes(self.control(s, "stats")["requests"]) for s in SYSTEMS}

    def config(
        self, store: Path, *, policy: ConflictPolicy, create_in_poweroffice: bool
    ) -> TolkenConfig:
        po_url, pms_url = self.urls["poweroffice"], self.urls["pms"]
        return TolkenConfig(
            store=f"sqlite:///{store}",
            poweroffice=PowerOfficeSettings(
                base_url=f"{po_url}/v2",
                token_url=f"{po_url}/OAuth/Token",
                application_key=SecretStr(credentials.APPLICATION_KEY),
                client_key=SecretStr(credentials.CLIENT_KEY),
                subscription_key=SecretStr(credentials.SUBSCRIPTION_KEY),
                requests_per_second=1000.0,
                timeout_seconds=10.0,
            ),
            pms=PMSSettings(
                base_url=f"{pms_url}/api/v1",
                api_key=SecretStr(credentials.PMS_API_KEY),
                timeout_seconds=10.0,
            ),
            sync=SyncSettings(
                reconcile_every=1000,
                conflict_policy=policy,
                flows={
                    flow: FlowSettings(create_in_poweroffice=create_in_poweroffice)
                    for flow in ("departments", "customers", "projects")
                },
            ),
        )


SYSTEMS_UNDER_TEST: _Systems | None = None

Pick = st.integers(min_value=0, max_value=10_000)
"""Which existing record a rule acts on (modulo the count): shrinks well, never runs dry."""


class SyncMachine(RuleBasedStateMachine):
    """Random edits on both systems, runs and killed runs of the real engine (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        systems = SYSTEMS_UNDER_TEST
        assert systems is not None
        self.systems = systems
        for system in SYSTEMS:
            systems.control(system, "reset", {})
        self.tmp = Path(tempfile.mkdtemp(prefix="tolken-machine-"))
        self.config = systems.config(
            self.tmp / "tolken.db", policy="newest-wins", create_in_poweroffice=False
        )
        self.switch = CrashSwitch(self.config.store)
        self.engine: SyncEngine | None = None
        self.opened = ExitStack()  # the running engine and its connectors
        # A person's own clients (not the engine's: a crash kills only tolken).
        self.po = PowerOfficeClient(self.config.poweroffice)
        self.pms = PMSClient(self.config.pms)
        self.ledger = EditLedger()
        self.numbers = itertools.count(1)
        self.departments: list[str] = []
        self.customers: list[str] = []
        self.projects: list[str] = []
        self.waiting_orgs: list[tuple[str, str]] = []
        self.pms_only: set[str] = set()
        self.ambiguous: dict[str, str] = {}  # PowerOffice customer id -> its org number digits

    def teardown(self) -> None:
        try:
            if self.engine is not None:
                self._check_converged()
        finally:
            self.opened.close()
            self.po.close()
            self.pms.close()
            self.switch.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------

    @property
    def live(self) -> SyncEngine:
        assert self.engine is not None
        return self.engine

    def _start_engine(self) -> None:
        """A new tolken process on the same store (after a crash, or at the start)."""
        self.opened.close()
        self.switch.revive()
        self.engine = self.opened.enter_context(
            open_engine(self.config, transports=self.switch.transports())
        )

    def _pms_id(self, flow: str, po_id: str) -> str | None:
        return self.live.store.link_map(flow).get(po_id)  # type: ignore[arg-type]

    def _next(self) -> int:
        return next(self.numbers)

    def _po_write(
        self, flow: str, resource: str, po_id: str, changes: dict[str, Any], flat: dict[str, Any]
    ) -> None:
        """A person's PowerOffice edit; ``flat`` is the same edit in PMS-path space."""
        mapping = self.live.mapping.flow(flow)
        resolver = LinkResolver(self.live.store)
        before = to_pms_flat(mapping, self.po.get(resource, po_id).data, resolver, unresolved=set())
        self.po.update(resource, po_id, changes)
        self.ledger.wrote("poweroffice", flow, po_id, _edited(before, flat))

    def _pms_write(
        self, flow: str, po_id: str, changes: dict[str, Any], flat: dict[str, Any]
    ) -> bool:
        """A person's edit of the PMS twin of PowerOffice ``po_id`` (False: not linked yet)."""
        pms_id = self._pms_id(flow, po_id)
        if pms_id is None:
            return False
        self._pms_edit(flow, po_id, pms_id, changes, flat)
        return True

    def _pms_edit(
        self, flow: str, po_id: str, pms_id: str, changes: dict[str, Any], flat: dict[str, Any]
    ) -> None:
        resource = "projects" if flow == "projects" else "customers"
        before = project(self.live.mapping.flow(flow), self.pms.get(resource, pms_id).data)
        self.pms.update(resource, pms_id, changes)
        self.ledger.wrote("pms", flow, po_id, _edited(before, flat))

    def _add_department(self, name: str) -> None:
        code = f"D{self._next()}"
        body = {"Code": code, "Name": name, "IsActive": True}
        po_id = self.po.create("Departments", body, idempotency_key=code).id
        self.departments.append(po_id)
        self.ledger.wrote("poweroffice", "departments", po_id, {"name": name})

    def _add_customer(self, person: bool, name: str, email: str, phone: str) -> None:
        body: dict[str, Any] = {"Name": name, "PhoneNumber": phone, "EmailAddress": email}
        if person:
            first, last = name.split(" ", 1)
            body.update(IsPerson=True, FirstName=first, LastName=last)
        else:
            body.update(OrganizationNumber=f"{980000000 + self._next()}")
        record = self.po.create("Customers", body, idempotency_key=f"m-{self._next()}")
        self.customers.append(record.id)
        self.ledger.wrote("poweroffice", "customers", record.id, {"phone": phone, "email": email})

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
        po_id = self.po.create("Projects", body, idempotency_key=code).id
        self.projects.append(po_id)
        self.ledger.wrote("poweroffice", "projects", po_id, {"name": name})

    def _observe(self) -> None:
        """Note which written values got across (after every run: crashed, faulty or not)."""
        self.ledger.observe(linked_fields(self.po, self.pms, self.live.store, self.live.mapping))

    # -- a synced start -------------------------------------------------------------

    @initialize(
        create_in_poweroffice=st.booleans(),
        policy=st.sampled_from(POLICIES),
        populated=st.booleans(),
    )
    def synced_start(
        self, create_in_poweroffice: bool, policy: ConflictPolicy, populated: bool
    ) -> None:
        """Two departments, three customers and two projects, synced once.

        With ``create_in_poweroffice`` PMS-only records are created in PowerOffice too;
        ``policy`` settles the conflicts of this example; with ``populated`` the PMS
        already holds a company with the org number of one of the customers (another
        name and e-mail, no phone): the first run links the two, it does not make one.
        """
        self.config = self.systems.config(
            self.tmp / "tolken.db", policy=policy, create_in_poweroffice=create_in_poweroffice
        )
        self._start_engine()
        for name in ("Hovedkontor", "Bergen"):
            self._add_department(name)
        self._add_customer(False, "Fjord Bygg", "post@fjord.no", "+47 400 00 001")
        self._add_customer(False, "Havbris Data", "post@havbris.no", "+47 400 00 002")
        self._add_customer(True, "Kari Nordmann", "kari@nordmann.no", "+47 400 00 003")
        self._add_project(0, 0, "Nybygg", "Active")
        self._add_project(2, 1, "Service", "NotStarted")
        if populated:
            org = str(self.po.get("Customers", self.customers[0]).data["OrganizationNumber"])
            body = {
                "kind": "company",
                "name": "Fjord Bygg AS",
                "organization_number": f"{org[:3]} {org[3:6]} {org[6:]}",
                "email": "faktura@fjord.no",
            }
            self.pms.create("customers", body, idempotency_key=f"pms-{org}")
        self.live.run_cycle()
        self._observe()

    # -- creates --------------------------------------------------------------------

    @rule(name=names)
    def create_department(self, name: str) -> None:
        self._add_department(name)

    @rule(person=st.booleans(), name=names, email=emails, phone=phones)
    def create_customer(self, person: bool, name: str, email: str, phone: str) -> None:
        self._add_customer(person, name, email, phone)

    @rule(name=names, matched=st.booleans(), spaced=st.booleans())
    def create_pms_company(self, name: str, matched: bool, spaced: bool) -> None:
        """A company in the PMS first; a later PowerOffice customer may match it by org number."""
        org = f"{970000000 + self._next()}"
        shown = f"{org[:3]} {org[3:6]} {org[6:]}" if spaced else org
        record = self.pms.create(
            "customers",
            {"kind": "company", "name": name, "organization_number": shown},
            idempotency_key=f"pms-{org}",
        )
        self.pms_only.add(record.id)
        if matched:
            self.waiting_orgs.append((org, record.id))

    @rule(name=names)
    def create_matching_customer(self, name: str) -> None:
        """A PowerOffice customer with the org number of one unlinked PMS company: linked to it."""
        if not self.waiting_orgs:
            return
        org, pms_id = self.waiting_orgs.pop()
        if pms_id in self.live.store.link_map("customers").values():
            return  # already created in PowerOffice from the PMS (create_in_poweroffice)
        body = {"Name": name, "OrganizationNumber": org}
        record = self.po.create("Customers", body, idempotency_key=f"m-{self._next()}")
        self.customers.append(record.id)
        self.pms_only.discard(pms_id)  # from now on it must end up linked (to this customer)

    @rule(name=names)
    def create_ambiguous_customer(self, name: str) -> None:
        """Two PMS companies share an org number (written two ways) and so does a new PowerOffice
        customer: never auto-linked by that number, and no third PMS record is made for it."""
        org = f"{960000000 + self._next()}"
        for shown in (org, f"{org[:3]} {org[3:6]} {org[6:]}"):
            body = {"kind": "company", "name": name, "organization_number": shown}
            record = self.pms.create("customers", body, idempotency_key=f"pms-a{self._next()}")
            self.pms_only.add(record.id)
        created = self.po.create(
            "Customers", {"Name": name, "OrganizationNumber": org}, idempotency_key=f"a-{org}"
        )
        self.ambiguous[created.id] = org

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

    @rule(customer=Pick, department=Pick, name=names, status=st.sampled_from(sorted(STATUSES)))
    def create_project(self, customer: int, department: int, name: str, status: str) -> None:
        self._add_project(customer, department, name, status)

    # -- PowerOffice edits ----------------------------------------------------------

    @rule(pick=Pick, name=names, phone=phones, email=emails)
    def edit_po_customer(self, pick: int, name: str, phone: str, email: str) -> None:
        customer = self.customers[pick % len(self.customers)]
        changes = {"Name": name, "PhoneNumber": phone}
        self._po_write("customers", "Customers", customer, changes, {"name": name, "phone": phone})
        self._po_write(
            "customers", "Customers", customer, {"EmailAddress": email}, {"email": email}
        )

    @rule(pick=Pick, place=st.sampled_from(CITIES))
    def edit_po_address_only(self, pick: int, place: tuple[str, str]) -> None:
        """PowerOffice does not move the customer's timestamp for this one."""
        zip_code, city = place
        customer = self.customers[pick % len(self.customers)]
        changes = {"MailAddress": {"ZipCode": zip_code, "City": city}}
        flat = {"address.postal_code": zip_code, "address.city": city}
        self._po_write("customers", "Customers", customer, changes, flat)

    @rule(pick=Pick, archived=st.booleans())
    def archive_po_customer(self, pick: int, archived: bool) -> None:
        customer = self.customers[pick % len(self.customers)]
        changes = {"IsArchived": archived}
        self._po_write("customers", "Customers", customer, changes, {"active": not archived})

    @rule(pick=Pick, name=names, active=st.booleans())
    def edit_po_department(self, pick: int, name: str, active: bool) -> None:
        department = self.departments[pick % len(self.departments)]
        changes = {"Name": name, "IsActive": active}
        flat = {"name": name, "active": active}
        self._po_write("departments", "Departments", department, changes, flat)

    @rule(pick=Pick, customer=Pick, name=names)
    def edit_po_project(self, pick: int, customer: int, name: str) -> None:
        project = self.projects[pick % len(self.projects)]
        customer_id = self.customers[customer % len(self.customers)]
        flat: dict[str, Any] = {"name": name}
        target = self._pms_id("customers", customer_id)
        if target is not None:
            flat["customer_id"] = target
        changes = {"Name": name, "CustomerId": int(customer_id)}
        self._po_write("projects", "Projects", project, changes, flat)
        if target is None:
            self.ledger.replaced("poweroffice", "projects", project, ["customer_id"])

    # -- PMS edits (linked records only: the PMS side has no id before a sync) ------

    @rule(pick=Pick, name=names, phone=phones)
    def edit_pms_customer(self, pick: int, name: str, phone: str) -> None:
        changes = {"name": name, "phone": phone}
        self._pms_write("customers", self.customers[pick % len(self.customers)], changes, changes)

    @rule(pick=Pick, place=st.sampled_from(CITIES), active=st.booleans())
    def edit_pms_customer_address(self, pick: int, place: tuple[str, str], active: bool) -> None:
        zip_code, city = place
        changes = {"address": {"postal_code": zip_code, "city": city}, "active": active}
        flat = {"address.postal_code": zip_code, "address.city": city, "active": active}
        self._pms_write("customers", self.customers[pick % len(self.customers)], changes, flat)

    @rule(pick=Pick, done=progress, status=st.sampled_from(sorted(STATUSES.values())))
    def edit_pms_project(self, pick: int, done: int, status: str) -> None:
        changes = {"progress": done, "status": status}
        self._pms_write("projects", self.projects[pick % len(self.projects)], changes, changes)

    @rule(pick=Pick, customer=Pick, end=st.sampled_from(["2025-06-30", "2026-01-31", None]))
    def edit_pms_project_links(self, pick: int, customer: int, end: str | None) -> None:
        """Point a PMS project at another (linked) customer and move or clear its end date."""
        target = self._pms_id("customers", self.customers[customer % len(self.customers)])
        if target is not None:
            changes = {"customer_id": target, "end_date": end}
            self._pms_write("projects", self.projects[pick % len(self.projects)], changes, changes)

    @rule(pick=Pick, archived=st.booleans(), in_pms=st.booleans())
    def archive_project(self, pick: int, archived: bool, in_pms: bool) -> None:
        project = self.projects[pick % len(self.projects)]
        status = "archived" if archived else "active"
        if in_pms:
            self._pms_write("projects", project, {"status": status}, {"status": status})
        else:
            changes = {"ProjectStatus": status.capitalize(), "EndDate": "2025-12-31"}
            flat = {"status": status, "end_date": "2025-12-31"}
            self._po_write("projects", "Projects", project, changes, flat)

    @rule(pick=Pick, in_pms=st.booleans())
    def clear_phone(self, pick: int, in_pms: bool) -> None:
        """Clearing a field after the first link propagates like any other edit."""
        customer = self.customers[pick % len(self.customers)]
        if in_pms:
            self._pms_write("customers", customer, {"phone": None}, {"phone": None})
        else:
            self._po_write(
                "customers", "Customers", customer, {"PhoneNumber": None}, {"phone": None}
            )

    @rule(pick=Pick, po_name=names, pms_name=names, pms_last=st.booleans())
    def conflicting_names(self, pick: int, po_name: str, pms_name: str, pms_last: bool) -> None:
        """Both sides change the same field before tolken runs: the policy settles it."""
        customer = self.customers[pick % len(self.customers)]
        if self._pms_id("customers", customer) is None:
            return
        if not pms_last:
            self._pms_write("customers", customer, {"name": pms_name}, {"name": pms_name})
        self._po_write("customers", "Customers", customer, {"Name": po_name}, {"name": po_name})
        if pms_last:
            self._pms_write("customers", customer, {"name": pms_name}, {"name": pms_name})

    @rule(pick=Pick, po_name=names, pms_name=names)
    def conflicting_department_names(self, pick: int, po_name: str, pms_name: str) -> None:
        department = self.departments[pick % len(self.departments)]
        if self._pms_write("departments", department, {"name": pms_name}, {"name": pms_name}):
            changes = {"Name": po_name}
            self._po_write("departments", "Departments", department, changes, {"name": po_name})

    # -- runs -----------------------------------------------------------------------

    @rule(reconcile=st.booleans(), race=st.none() | names)
    def run(self, reconcile: bool, race: str | None) -> None:
        """A run (or a reconcile); with ``race`` a person renames a PMS record between tolken's
        read and its write to that record (the write gets 412)."""
        if race is not None:
            self.switch.before_write = self._racer(race)
        try:
            self.live.run_cycle(reconcile=reconcile)
        finally:
            self.switch.before_write = None
        self._observe()

    @rule(write=st.integers(1, 3), moment=st.sampled_from(["before", "after"]), full=st.booleans())
    def run_killed(self, write: int, moment: CrashMoment, full: bool) -> None:
        """tolken dies at the ``write``-th write of a run (sent or not); a new process goes on."""
        self.switch.arm(write, moment)
        try:
            self.live.run_cycle(reconcile=full)
            event("run_killed: the run ended before the kill")
        except Crash:
            event("run_killed: killed")
        self._start_engine()
        self._observe()

    def _racer(self, name: str) -> Callable[[httpx.Request], None]:
        """Before tolken's first PATCH of a linked PMS record, a person renames that record."""
        owners = {
            pms_id: (flow, po_id)
            for flow in self.live.flows()
            for po_id, pms_id in self.live.store.link_map(flow).items()
        }
        raced: list[str] = []

        def race(request: httpx.Request) -> None:
            found = PMS_RECORD.search(request.url.path)
            if raced or request.method != "PATCH" or found is None or found[2] not in owners:
                return
            raced.append(found[2])
            event("run: a person's PMS edit raced tolken's write")
            flow, po_id = owners[found[2]]
            self._pms_edit(flow, po_id, found[2], {"name": name}, {"name": name})

        return race

    @rule(seed=st.integers(0, 2**16))
    def run_under_faults(self, seed: int) -> None:
        """A run while requests fail and answers get lost; a run that fails as a whole is fine."""
        self.systems.faults(seed)
        try:
            self.live.run_cycle()
        except TolkenError:
            pass
        finally:
            self.systems.faults(None)
        self._observe()

    @invariant()
    def links_are_one_to_one(self) -> None:
        if self.engine is None:
            return
        for flow in self.live.flows():
            links = self.live.store.list_links(flow)
            assert len({link.poweroffice_id for link in links}) == len(links)
            assert len({link.pms_id for link in links}) == len(links)

    # -- the end --------------------------------------------------------------------

    def _check_converged(self) -> None:
        engine = self.live
        engine.store.retry_failures_now()
        quiet = engine.run_cycle(reconcile=True)
        assert quiet.total("failed") == 0, quiet.to_json()
        conflicts = conflicts_by_field(engine.store)
        parked = {key for key, found in conflicts.items() if any(not c.resolved for c in found)}
        problems = divergences(
            self.po,
            self.pms,
            engine.store,
            engine.mapping,
            unlinked_pms_allowed=self.pms_only,
            unlinked_po_allowed=self.ambiguous,
            differing_allowed=parked,
        )
        assert problems == [], "\n".join(problems)
        now = linked_fields(self.po, self.pms, engine.store, engine.mapping)
        self.ledger.observe(now)
        lost = self.ledger.lost(now, conflicts)
        assert lost == [], "\n".join(lost)
        assert engine.store.pending_creates() == []
        orgs = [
            "".join(c for c in str(r.data.get("organization_number") or "") if c.isdigit())
            for r in self.pms.list("customers")
        ]
        for org in self.ambiguous.values():
            assert orgs.count(org) == 2, f"a PMS record was made for the ambiguous org {org}"
        for reconcile in (False, True):
            before = self.systems.writes()
            engine.run_cycle(reconcile=reconcile)
            assert self.systems.writes() == before, f"a further run wrote (reconcile={reconcile})"


def _edited(before: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    """The written values that change the record (writing the value it holds is no edit)."""
    return {path: v for path, v in written.items() if not values_equal(before.get(path), v)}


@pytest.fixture(scope="module")
def systems() -> Iterator[_Systems]:
    with ExitStack() as stack, _http.testing():
        clear_shared_limiters()
        yield _Systems(stack)
    clear_shared_limiters()


@pytest.mark.slow
def test_random_edits_runs_and_crashes_converge_after_a_quiet_run(systems: _Systems) -> None:
    """Random edits on both sides, runs and killed runs of the real engine over loopback HTTP end
    with equal fields, no duplicates, no lost edit but recorded conflict losers, and idle runs."""
    global SYSTEMS_UNDER_TEST
    SYSTEMS_UNDER_TEST = systems
    try:
        run_state_machine_as_test(
            SyncMachine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        SYSTEMS_UNDER_TEST = None
