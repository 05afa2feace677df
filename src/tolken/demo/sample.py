"""The demo's sample data: a small Norwegian company's accounting and its PMS.

Hand-picked rather than random so the story is the same on every run: most
PowerOffice records are new to the PMS (they get *created*), a few already
exist there and are *linked* by the merge rules (same organisation number,
a person's e-mail, department number or project code), one of those pairs
disagrees on a value (a first-link *conflict*), and one company is registered twice in the PMS, so
its match is *ambiguous* and is left for a person (``tolken link``).

Organisation numbers are 9 digits with a valid mod-11 check digit (weights
3 2 7 6 5 4 3 2), like the Brønnøysund register's; postal codes and cities
are real pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AMBIGUOUS_COMPANY",
    "COMPANIES",
    "CONFLICT",
    "DEPARTMENTS",
    "PERSONS",
    "PMS_COMPANIES",
    "PMS_DEPARTMENTS",
    "PMS_PERSONS",
    "PMS_PROJECTS",
    "PROJECTS",
    "Company",
    "Department",
    "Person",
    "Project",
    "is_valid_org_number",
    "pms_existing",
    "poweroffice_customer",
    "poweroffice_department",
    "poweroffice_project",
]

_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)


def is_valid_org_number(value: str) -> bool:
    """True when ``value`` (spaces allowed) is 9 digits with a correct mod-11 check digit."""
    digits = value.replace(" ", "")
    if len(digits) != 9 or not digits.isdigit():
        return False
    remainder = sum(int(d) * w for d, w in zip(digits[:8], _WEIGHTS, strict=True)) % 11
    check = 0 if remainder == 0 else 11 - remainder
    return check != 10 and check == int(digits[8])


@dataclass(frozen=True)
class Department:
    """A PowerOffice department (a PMS customer of kind ``department``)."""

    code: str
    name: str


@dataclass(frozen=True)
class Company:
    """A company customer."""

    name: str
    org_number: str
    email: str
    phone: str
    street: str
    postal_code: str
    city: str

    @property
    def website(self) -> str:
        return "https://www." + self.email.split("@", 1)[1]


@dataclass(frozen=True)
class Person:
    """A private-person customer."""

    first_name: str
    last_name: str
    email: str
    phone: str
    street: str
    postal_code: str
    city: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True)
class Project:
    """A project for a customer (by name), run by a department (by code)."""

    code: str
    name: str
    customer: str
    department: str
    start: str
    end: str
    status: str  # PowerOffice ProjectStatus
    billable: bool
    progress: int


DEPARTMENTS = (
    Department("10", "Salg"),
    Department("20", "Prosjekt"),
    Department("30", "Drift"),
    Department("40", "Økonomi"),
    Department("50", "Service"),
)

COMPANIES = (
    Company("Nordlys Elektro AS", "925308293", "post@nordlyselektro.no", "+47 22 41 18 00",
            "Kirkegata 15", "0153", "Oslo"),
    Company("Fjordkraft Bygg AS", "908101111", "post@fjordkraftbygg.no", "+47 55 30 12 40",
            "Bryggen 7", "5003", "Bergen"),
    Company("Nidaros Rør AS", "889906081", "post@nidarosror.no", "+47 73 52 80 10",
            "Munkegata 24", "7011", "Trondheim"),
    Company("Havblikk Regnskap AS", "861352412", "post@havblikk.no", "+47 51 84 22 90",
            "Strandkaien 12", "4005", "Stavanger"),
    Company("Polarlys Transport AS", "885133584", "post@polarlystransport.no", "+47 77 60 45 00",
            "Storgata 42", "9008", "Tromsø"),
    Company("Solberg Arkitekter AS", "806290726", "post@solbergark.no", "+47 32 21 77 30",
            "Bragernes torg 2", "3017", "Drammen"),
    Company("Vestland Maskin AS", "872753672", "post@vestlandmaskin.no", "+47 70 11 90 20",
            "Kongens gate 9", "6002", "Ålesund"),
    Company("Granitt Anlegg AS", "911719797", "post@granittanlegg.no", "+47 62 51 33 10",
            "Torggata 5", "2317", "Hamar"),
    Company("Bølgen Data AS", "815219112", "hei@bolgendata.no", "+47 38 07 61 00",
            "Markens gate 20", "4611", "Kristiansand"),
    Company("Trollheim Consult AS", "909917093", "post@trollheimconsult.no", "+47 75 50 21 80",
            "Dronningens gate 11", "8006", "Bodø"),
)  # fmt: skip

PERSONS = (
    Person("Kari", "Nordmann", "kari.nordmann@online.no", "+47 912 34 567",
           "Parkveien 3", "0350", "Oslo"),
    Person("Ola", "Hansen", "ola.hansen@gmail.com", "+47 934 56 789",
           "Løkkeveien 8", "4008", "Stavanger"),
    Person("Ingrid", "Solheim", "ingrid.solheim@outlook.com", "+47 415 22 908",
           "Sjøgata 4", "8006", "Bodø"),
    Person("Håkon", "Bakke", "hakon.bakke@icloud.com", "+47 988 71 204",
           "Fjordveien 21", "5058", "Bergen"),
)  # fmt: skip

PROJECTS = (
    Project("1001", "Nettside og nettbutikk", "Nordlys Elektro AS", "10",
            "2026-01-05", "2026-06-30", "Active", True, 40),
    Project("1002", "Rehabilitering kontorbygg", "Nidaros Rør AS", "20",
            "2025-09-01", "2026-12-15", "Active", True, 65),
    Project("1003", "Årsoppgjør 2026", "Havblikk Regnskap AS", "40",
            "2027-01-02", "2027-05-31", "NotStarted", True, 0),
    Project("1004", "Nybygg lager Tromsø", "Polarlys Transport AS", "20",
            "2026-03-01", "2027-04-30", "Active", True, 20),
    Project("1005", "Vedlikeholdsavtale 2027", "Solberg Arkitekter AS", "30",
            "2027-01-01", "2027-12-31", "Tentative", True, 0),
    Project("1006", "Tilbygg hytte", "Håkon Bakke", "20",
            "2026-04-15", "2026-09-30", "Active", True, 55),
    Project("1007", "Skymigrering", "Bølgen Data AS", "30",
            "2025-11-01", "2026-02-28", "Complete", True, 100),
    Project("1008", "Rådgivning ombygging", "Fjordkraft Bygg AS", "50",
            "2026-02-01", "2026-08-31", "Active", False, 10),
)  # fmt: skip

# What the PMS already holds before the first sync (see pms_existing).
PMS_DEPARTMENTS = ("20", "30")
PMS_COMPANIES = ("Nidaros Rør AS", "Havblikk Regnskap AS", "Polarlys Transport AS")
PMS_PERSONS = ("Kari Nordmann",)
PMS_PROJECTS = ("1002", "1004")
#: Registered twice in the PMS (head office and a branch): an ambiguous match.
AMBIGUOUS_COMPANY = "Fjordkraft Bygg AS"
#: (company, PMS field, PMS value): differs from PowerOffice when first linked.
CONFLICT = ("Polarlys Transport AS", "email", "firmapost@polarlys.no")


def poweroffice_department(dept: Department) -> dict[str, Any]:
    """A PowerOffice ``POST /Departments`` body."""
    return {"Code": dept.code, "Name": dept.name, "IsActive": True}


def _address(street: str, postal_code: str, city: str) -> dict[str, Any]:
    return {"AddressLine1": street, "ZipCode": postal_code, "City": city, "CountryCode": "NO"}


def poweroffice_customer(customer: Company | Person) -> dict[str, Any]:
    """A PowerOffice ``POST /Customers`` body."""
    body: dict[str, Any] = {
        "Name": customer.name,
        "EmailAddress": customer.email,
        "PhoneNumber": customer.phone,
        "MailAddress": _address(customer.street, customer.postal_code, customer.city),
    }
    if isinstance(customer, Person):
        body.update(IsPerson=True, FirstName=customer.first_name, LastName=customer.last_name)
    else:
        body.update(OrganizationNumber=customer.org_number, WebsiteUrl=customer.website)
    return body


def poweroffice_project(
    project: Project, customer_ids: dict[str, str], department_ids: dict[str, str]
) -> dict[str, Any]:
    """A PowerOffice ``POST /Projects`` body; references by PowerOffice id."""
    return {
        "Code": project.code,
        "Name": project.name,
        "CustomerId": int(customer_ids[project.customer]),
        "DepartmentId": int(department_ids[project.department]),
        "StartDate": project.start,
        "EndDate": project.end,
        "ProjectStatus": project.status,
        "IsBillable": project.billable,
        "Progress": project.progress,
    }


_PMS_STATUS = {
    "NotStarted": "planned",
    "Active": "active",
    "Complete": "completed",
    "Archived": "archived",
    "Tentative": "tentative",
}


def _pms_address(street: str, postal_code: str, city: str) -> dict[str, Any]:
    return {"line1": street, "postal_code": postal_code, "city": city, "country": "NO"}


def _pms_company(company: Company) -> dict[str, Any]:
    return {
        "kind": "company",
        "name": company.name,
        "organization_number": company.org_number,
        "email": company.email,
        "phone": company.phone,
        "website": company.website,
        "address": _pms_address(company.street, company.postal_code, company.city),
    }


def pms_existing() -> dict[str, list[dict[str, Any]]]:
    """The PMS records that exist before the first sync, by kind, in creation order.

    ``projects`` bodies name their customer and department by PowerOffice-side
    key (``customer``: company or person name, ``department``: code); the
    seeder swaps those for PMS ids once the customers exist.
    """
    by_name = {c.name: c for c in COMPANIES}
    departments = [
        {"kind": "department", "number": d.code, "name": d.name}
        for d in DEPARTMENTS
        if d.code in PMS_DEPARTMENTS
    ]
    companies = [_pms_company(by_name[name]) for name in PMS_COMPANIES]
    conflict_name, field, value = CONFLICT
    for body in companies:
        if body["name"] == conflict_name:
            body[field] = value
    twin = by_name[AMBIGUOUS_COMPANY]
    companies.append(_pms_company(twin))
    companies.append({**_pms_company(twin), "name": f"{twin.name} avd. Askøy", "phone": None})
    persons = []
    for person in PERSONS:
        if person.name in PMS_PERSONS:
            persons.append(
                {
                    "kind": "person",
                    "name": person.name,
                    "first_name": person.first_name,
                    "last_name": person.last_name,
                    "email": person.email,
                    "phone": person.phone,
                    "address": _pms_address(person.street, person.postal_code, person.city),
                }
            )
    projects = [
        {
            "code": p.code,
            "name": p.name,
            "customer": p.customer,
            "department": p.department,
            "start_date": p.start,
            "end_date": p.end,
            "status": _PMS_STATUS[p.status],
            "billable": p.billable,
            "progress": p.progress,
        }
        for p in PROJECTS
        if p.code in PMS_PROJECTS
    ]
    return {
        "departments": departments,
        "customers": [*companies, *persons],
        "projects": projects,
    }
