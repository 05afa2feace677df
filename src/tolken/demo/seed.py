"""Load the sample data into a running sandbox through the systems' own APIs.

PowerOffice records are POSTed through :class:`PowerOfficeClient` and PMS
records through :class:`PMSClient`, exactly as any client would. Only for the
seeding itself is the simulator's 10 requests/second gateway limit switched off
(``/_sandbox/settings``), so loading takes a fraction of a second; it is
switched back on before tolken's first sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tolken.config import PMSSettings, PowerOfficeSettings
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.connectors.ratelimit import memory_limiter
from tolken.demo import sample

__all__ = ["Seeded", "seed_sandbox"]

POWEROFFICE_RATE_LIMIT = 10.0


@dataclass
class Seeded:
    """Ids of what was loaded, keyed by the sample's names and codes."""

    po_departments: dict[str, str] = field(default_factory=dict)  # code -> id
    po_customers: dict[str, str] = field(default_factory=dict)  # name -> id
    po_projects: dict[str, str] = field(default_factory=dict)  # code -> id
    pms_departments: dict[str, str] = field(default_factory=dict)  # number -> id
    pms_customers: dict[str, list[str]] = field(default_factory=dict)  # name -> ids
    pms_projects: dict[str, str] = field(default_factory=dict)  # code -> id

    def counts(self) -> dict[str, dict[str, int]]:
        """Records per flow on each side."""
        return {
            "poweroffice": {
                "departments": len(self.po_departments),
                "customers": len(self.po_customers),
                "projects": len(self.po_projects),
            },
            "pms": {
                "departments": len(self.pms_departments),
                "customers": sum(len(ids) for ids in self.pms_customers.values()),
                "projects": len(self.pms_projects),
            },
        }


def _simulator_rate_limit(poweroffice_root: str, rate: float | None) -> None:
    response = httpx.post(
        f"{poweroffice_root}/_sandbox/settings", json={"rate_limit_per_second": rate}, timeout=10
    )
    response.raise_for_status()


def seed_sandbox(
    poweroffice_root: str, po_settings: PowerOfficeSettings, pms_settings: PMSSettings
) -> Seeded:
    """Load the sample into both systems (``poweroffice_root``: the simulator's base URL)."""
    seeded = Seeded()
    _simulator_rate_limit(poweroffice_root, None)
    try:
        # A budget of its own: the process-wide one of the subscription key stays at 10/s for sync.
        with PowerOfficeClient(po_settings, rate_limiter=memory_limiter(1000.0)) as po:
            _seed_poweroffice(po, seeded)
    finally:
        _simulator_rate_limit(poweroffice_root, POWEROFFICE_RATE_LIMIT)
    with PMSClient(pms_settings) as pms:
        _seed_pms(pms, seeded)
    return seeded


def _seed_poweroffice(po: PowerOfficeClient, seeded: Seeded) -> None:
    for dept in sample.DEPARTMENTS:
        body = sample.poweroffice_department(dept)
        seeded.po_departments[dept.code] = po.create(
            "Departments", body, idempotency_key=dept.code
        ).id
    for customer in (*sample.COMPANIES, *sample.PERSONS):
        body = sample.poweroffice_customer(customer)
        key = f"demo-{customer.name}"
        seeded.po_customers[customer.name] = po.create("Customers", body, idempotency_key=key).id
    for project in sample.PROJECTS:
        body = sample.poweroffice_project(project, seeded.po_customers, seeded.po_departments)
        seeded.po_projects[project.code] = po.create(
            "Projects", body, idempotency_key=project.code
        ).id


def _seed_pms(pms: PMSClient, seeded: Seeded) -> None:
    existing = sample.pms_existing()
    for body in existing["departments"]:
        record = pms.create("customers", body, idempotency_key=f"demo-dept-{body['number']}")
        seeded.pms_departments[str(body["number"])] = record.id
    for index, body in enumerate(existing["customers"]):
        record = pms.create("customers", body, idempotency_key=f"demo-customer-{index}")
        seeded.pms_customers.setdefault(str(body["name"]), []).append(record.id)
    for raw in existing["projects"]:
        project: dict[str, Any] = dict(raw)
        project["customer_id"] = seeded.pms_customers[project.pop("customer")][0]
        project["department_id"] = seeded.pms_departments[project.pop("department")]
        record = pms.create("projects", project, idempotency_key=f"demo-project-{project['code']}")
        seeded.pms_projects[str(project["code"])] = record.id
