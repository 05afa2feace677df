"""Realistic Norwegian sample data for the reference PMS (``POST /_sandbox/seed``)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from tolken.sandbox.pms.db import Store

_PLACES = [
    ("0150", "Oslo"), ("0565", "Oslo"), ("5003", "Bergen"), ("7011", "Trondheim"),
    ("4006", "Stavanger"), ("9008", "Tromsø"), ("3015", "Drammen"), ("1606", "Fredrikstad"),
    ("4610", "Kristiansand"), ("2317", "Hamar"), ("6002", "Ålesund"), ("8006", "Bodø"),
]  # fmt: skip
_STREETS = [
    "Storgata", "Kirkegata", "Dronningens gate", "Strandveien", "Fjordveien",
    "Bryggen", "Torggata", "Skoleveien", "Industriveien", "Sjøgata", "Løkkeveien",
]  # fmt: skip
_PREFIXES = [
    "Fjord", "Nordlys", "Vestland", "Bjørk", "Fjell", "Havbris", "Solberg", "Granli",
    "Elvebakken", "Trollheim", "Lysaker", "Måkeskjær", "Aurora", "Tindefjell", "Skogly",
]  # fmt: skip
_TRADES = [
    "Bygg", "Elektro", "Rør", "Regnskap", "Eiendom", "Arkitekter", "Maskin",
    "Transport", "Consult", "Snekkeri", "Maling", "Anlegg", "Data", "Marin",
]  # fmt: skip
_FIRST = [
    "Ola", "Kari", "Ingrid", "Lars", "Øyvind", "Åse", "Sigrid", "Henrik", "Marte",
    "Bjørn", "Solveig", "Eirik", "Ragnhild", "Håkon", "Tuva", "Jørgen", "Astrid",
]  # fmt: skip
_LAST = [
    "Nordmann", "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Bakke", "Lie",
    "Haugen", "Berg", "Dahl", "Strand", "Solheim", "Sæther", "Øverby", "Aasen",
]  # fmt: skip
_DEPARTMENTS = ["Oslo", "Bergen", "Trondheim", "Prosjekt", "Drift", "Salg", "Service", "Nord"]
_WORKS = [
    "Rehabilitering", "Nybygg", "Tilbygg", "Service", "Oppgradering", "Vedlikehold",
    "Rammeavtale", "Forprosjekt", "Ombygging",
]  # fmt: skip
_SITES = ["kontorbygg", "lager", "barnehage", "skole", "brygge", "leiligheter", "hytte", "hall"]
_STATUSES = ["planned", "active", "active", "active", "completed", "archived", "tentative"]


def organization_number(rng: random.Random) -> str:
    """A 9-digit Norwegian organisation number with a valid MOD11 check digit."""
    while True:
        digits = [rng.randint(8, 9)] + [rng.randint(0, 9) for _ in range(7)]
        remainder = sum(d * w for d, w in zip(digits, [3, 2, 7, 6, 5, 4, 3, 2], strict=True)) % 11
        check = 0 if remainder == 0 else 11 - remainder
        if check != 10:
            return "".join(map(str, [*digits, check]))


def _slug(text: str) -> str:
    table = str.maketrans({"æ": "ae", "ø": "o", "å": "a", " ": ""})
    return text.lower().translate(table)


def _address(rng: random.Random) -> dict[str, Any]:
    postal_code, city = rng.choice(_PLACES)
    line2 = f"{rng.randint(1, 5)}. etasje" if rng.random() < 0.2 else None
    line1 = f"{rng.choice(_STREETS)} {rng.randint(1, 120)}"
    return {
        "line1": line1, "line2": line2, "postal_code": postal_code, "city": city, "country": "NO",
    }  # fmt: skip


def company(rng: random.Random, number: int) -> dict[str, Any]:
    """A company customer body."""
    base = f"{rng.choice(_PREFIXES)} {rng.choice(_TRADES)}"
    domain = _slug(base) + ".no"
    return {
        "kind": "company",
        "number": str(number),
        "name": f"{base} {rng.choice(['AS', 'AS', 'AS', 'ASA', 'ANS'])}",
        "organization_number": organization_number(rng),
        "email": f"post@{domain}",
        "phone": f"+47 {rng.randint(21, 79)} {rng.randint(10, 99)} {rng.randint(10, 99)} "
        f"{rng.randint(10, 99)}",
        "website": f"https://www.{domain}",
        "address": _address(rng),
    }


def person(rng: random.Random, number: int) -> dict[str, Any]:
    """A private-person customer body."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "kind": "person",
        "number": str(number),
        "name": f"{first} {last}",
        "first_name": first,
        "last_name": last,
        "email": f"{_slug(first)}.{_slug(last)}{rng.randint(1, 99)}@example.no",
        "phone": f"+47 {rng.randint(400, 999)} {rng.randint(10, 99)} {rng.randint(100, 999)}",
        "address": _address(rng),
    }


def project(
    rng: random.Random, code: int, customers: list[str], departments: list[str]
) -> dict[str, Any]:
    """A project body referring to existing customers and departments."""
    start = date(2024, 1, 1) + timedelta(days=rng.randint(0, 700))
    status = rng.choice(_STATUSES)
    body: dict[str, Any] = {
        "code": f"P-{code}",
        "name": f"{rng.choice(_WORKS)} {rng.choice(_SITES)} {rng.choice(_PLACES)[1]}",
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=rng.randint(14, 400))).isoformat(),
        "status": status,
        "billable": rng.random() < 0.8,
        "progress": 100 if status == "completed" else rng.randint(0, 95),
        "active": status != "archived",
    }
    if customers:
        body["customer_id"] = rng.choice(customers)
    if departments:
        body["department_id"] = rng.choice(departments)
    return body


def seed(store: Store, counts: dict[str, int], rng_seed: int | None = None) -> dict[str, Any]:
    """Create ``departments``, then ``customers`` (companies and persons), then ``projects``.

    Projects refer to customers and departments that exist (new or older ones).
    Returns the counts created and the new ids.
    """
    unknown = set(counts) - {"customers", "departments", "projects"}
    if unknown:
        raise ValueError(f"unknown seed keys: {', '.join(sorted(unknown))}")
    rng = random.Random(rng_seed)
    created: dict[str, list[str]] = {"departments": [], "customers": [], "projects": []}
    existing, _ = store.page("customer", limit=1_000_000)
    numbers = [int(c["number"]) for c in existing if str(c.get("number") or "").isdigit()]
    next_number = max([*numbers, 9999]) + 1
    used_departments = {c["name"] for c in existing if c["kind"] == "department"}
    for index in range(counts.get("departments", 0)):
        name = _DEPARTMENTS[index % len(_DEPARTMENTS)]
        suffix = "" if name not in used_departments else f" {index // len(_DEPARTMENTS) + 2}"
        used_departments.add(name + suffix)
        body = {
            "kind": "department",
            "number": str(10 * (len(used_departments))),
            "name": name + suffix,
        }
        created["departments"].append(store.create("customer", body)[0]["id"])
    for _ in range(counts.get("customers", 0)):
        make = company if rng.random() < 0.7 else person
        created["customers"].append(store.create("customer", make(rng, next_number))[0]["id"])
        next_number += 1
    customers = [c["id"] for c in existing if c["kind"] != "department"] + created["customers"]
    departments = [c["id"] for c in existing if c["kind"] == "department"] + created["departments"]
    projects, _ = store.page("project", limit=1_000_000)
    next_code = 1000 + len(projects) + 1
    for offset in range(counts.get("projects", 0)):
        body = project(rng, next_code + offset, customers, departments)
        created["projects"].append(store.create("project", body)[0]["id"])
    return {
        "created": {kind: len(ids) for kind, ids in created.items()},
        "ids": created,
    }
