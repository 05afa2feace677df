"""Deterministic, realistic Norwegian sample data for ``POST /_sandbox/seed``.

Companies (``… AS``) with valid 9-digit organisation numbers (mod-11 check
digit, weights 3 2 7 6 5 4 3 2), persons with e-mail addresses, ``+47``
phone numbers, street addresses with real postal codes and cities;
departments with codes 10, 20, …; projects referencing existing customers and
departments. The same request on the same state yields the same data (the
random generator is seeded from the counts already stored). Rows are built
from a template and streamed into one bulk insert, so 100,000 customers take
a few seconds without all of them being held in memory.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from tolken.sandbox.poweroffice.db import TABLES, Store, format_ticks
from tolken.sandbox.poweroffice.dtos import ADDRESS, CUSTOMER, DEPARTMENT, PROJECT
from tolken.sandbox.poweroffice.resources import (
    CUSTOMER_DEFAULTS,
    PROJECT_DEFAULTS,
    columns_of,
)

__all__ = ["org_number_check_digit", "seed"]

_PREFIXES = (
    "Nordlys", "Fjord", "Vestland", "Fjell", "Havblikk", "Solberg", "Skog", "Bryggen",
    "Nidaros", "Polar", "Lofoten", "Trollheim", "Vik", "Elvebakken", "Sjøstjerne",
    "Granitt", "Midnattsol", "Furu", "Kystlinje", "Aurora", "Hardanger", "Viken",
    "Tindeland", "Bølgen", "Stavkirke",
)  # fmt: skip
_TRADES = (
    "Bygg", "Rør", "Elektro", "Regnskap", "Transport", "Consult", "Eiendom", "Maskin",
    "Snekkeri", "Data", "Marine", "Fisk", "Arkitekter", "Maling", "Tak", "Catering",
    "Reklame", "Installasjon", "Anlegg", "Revisjon",
)  # fmt: skip
_FORMS = ("AS", "AS", "AS", "AS", "ANS", "DA", "Holding AS")
_FIRST = (
    "Ola", "Kari", "Nora", "Emma", "Jakob", "Lars", "Ingrid", "Sofie", "Henrik", "Sigrid",
    "Magnus", "Ingeborg", "Emil", "Astrid", "Oskar", "Maja", "Filip", "Thea", "Sander",
    "Hedda", "Knut", "Solveig", "Øystein", "Åse", "Bjørn", "Tuva", "Håkon", "Marte",
)  # fmt: skip
_LAST = (
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen",
    "Kristiansen", "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg",
    "Haugen", "Hagen", "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen",
    "Halvorsen", "Lund", "Sæther", "Bakke", "Strand", "Solheim", "Moen", "Ødegård",
)  # fmt: skip
_STREETS = (
    "Storgata", "Kirkegata", "Parkveien", "Strandveien", "Skolegata", "Sjøgata",
    "Kongens gate", "Dronningens gate", "Fjordveien", "Bjørnstjerne Bjørnsons gate",
    "Industriveien", "Nedre Slottsgate", "Havnegata", "Torggata", "Løkkeveien",
)  # fmt: skip
_PLACES = (
    ("0150", "Oslo"), ("0468", "Oslo"), ("5003", "Bergen"), ("5058", "Bergen"),
    ("7011", "Trondheim"), ("4006", "Stavanger"), ("9008", "Tromsø"), ("3015", "Drammen"),
    ("4608", "Kristiansand"), ("1607", "Fredrikstad"), ("2317", "Hamar"),
    ("6002", "Ålesund"), ("8006", "Bodø"), ("3111", "Tønsberg"), ("1530", "Moss"),
    ("2815", "Gjøvik"), ("3717", "Skien"), ("5527", "Haugesund"), ("2609", "Lillehammer"),
    ("6413", "Molde"), ("9510", "Alta"), ("1337", "Sandvika"), ("1440", "Drøbak"),
)  # fmt: skip
_MAIL_DOMAINS = ("gmail.com", "online.no", "hotmail.com", "outlook.com", "icloud.com")
_DEPARTMENTS = (
    "Salg", "Administrasjon", "Prosjekt", "Drift", "Økonomi", "IT", "Marked", "Service",
    "Produksjon", "Kundesenter", "Innkjøp", "Lager", "HR", "Utvikling", "Kvalitet",
)  # fmt: skip
_PROJECT_KINDS = (
    "Nettside", "Rehabilitering", "Årsoppgjør 2026", "Rådgivning", "Implementering ERP",
    "Vedlikeholdsavtale", "Nybygg", "Tilbygg", "Markedskampanje", "Skymigrering",
    "Lønnsoppsett", "Budsjett 2027", "Kontorflytting", "Sikkerhetsrevisjon",
)  # fmt: skip
_STATUSES = ("Active",) * 6 + ("NotStarted", "Complete", "Tentative", "Archived")
_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class _Random(random.Random):
    """``random.Random`` with a cheaper ``choice`` (the seed loop calls it a lot)."""

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.random() * len(seq))]

    def upto(self, limit: int) -> int:
        return int(self.random() * limit)


def org_number_check_digit(first8: str) -> int | None:
    """The mod-11 check digit of a Norwegian organisation number, None if impossible."""
    digits = [int(d) for d in first8]
    remainder = sum(d * w for d, w in zip(digits, _WEIGHTS, strict=True)) % 11
    check = 0 if remainder == 0 else 11 - remainder
    return None if check == 10 else check


def _org_number(rng: _Random) -> str:
    while True:
        first8 = str(rng.pick((8, 9))) + f"{rng.upto(10**7):07d}"
        check = org_number_check_digit(first8)
        if check is not None:
            return f"{first8}{check}"


def _ascii(text: str) -> str:
    table = str.maketrans({"æ": "ae", "ø": "o", "å": "a", " ": "", "-": ""})
    return text.lower().translate(table)


def _phone(rng: _Random) -> str:
    return f"+47{rng.pick((4, 9))}{rng.upto(10**7):07d}"


def seed(store: Store, counts: dict[str, int]) -> dict[str, int]:
    """Add ``counts`` departments, customers and projects; return what was added."""
    unknown = set(counts) - {"departments", "customers", "projects"}
    if unknown:
        raise ValueError(f"Unknown seed keys: {', '.join(sorted(unknown))}.")
    added = {"departments": 0, "customers": 0, "projects": 0}
    with store.transaction() as conn:
        for key, builder in (
            ("departments", _departments),
            ("customers", _customers),
            ("projects", _projects),
        ):
            count = counts.get(key, 0)
            if count:
                existing = conn.execute(f"SELECT COUNT(*) FROM {key}").fetchone()[0]
                rng = _Random(f"{key}:{existing}:{count}")
                store.bulk_insert(conn, key.capitalize(), builder(store, conn, rng, count))
                added[key] = count
        store.save_clock(conn)
    return added


def _row(path: str, doc: dict[str, Any], tick: int) -> tuple[Any, ...]:
    names = TABLES[path][1]
    columns = columns_of(path, doc)
    return (
        doc["Id"],
        *(columns[n] for n in names),
        tick,
        tick,
        _ENCODE(doc),
    )


def _departments(store: Store, conn: Any, rng: _Random, count: int) -> Iterator[tuple[Any, ...]]:
    codes = [c for (c,) in conn.execute("SELECT code FROM departments") if c and c.isdigit()]
    next_code = (max(map(int, codes), default=0) // 10 + 1) * 10
    first_id = store.next_value(conn, "department_id", count)
    ticks = store.clock.ticks(count)

    def rows() -> Iterator[tuple[Any, ...]]:
        for i, tick in enumerate(ticks):
            name = _DEPARTMENTS[i % len(_DEPARTMENTS)]
            if i >= len(_DEPARTMENTS):
                name = f"{name} {_PLACES[(i // len(_DEPARTMENTS)) % len(_PLACES)][1]}"
            stamp = format_ticks(tick)
            doc: dict[str, Any] = dict.fromkeys(DEPARTMENT.read)
            doc.update(
                Id=first_id + i,
                Code=str(next_code + 10 * i),
                Name=name,
                IsActive=rng.random() > 0.05,
                CreatedDateTimeOffset=stamp,
                LastChangedDateTimeOffset=stamp,
            )
            yield _row("Departments", doc, tick)

    return rows()


def _customers(store: Store, conn: Any, rng: _Random, count: int) -> Iterator[tuple[Any, ...]]:
    first_id = store.next_value(conn, "contact_id", count)
    first_address = store.next_value(conn, "address_id", count)
    first_ledger = store.next_value(conn, "subledger_id", count)
    first_number = store.next_customer_number(conn)
    template: dict[str, Any] = dict.fromkeys(CUSTOMER.read)
    template.update(CUSTOMER_DEFAULTS)
    ticks = store.clock.ticks(count)

    def rows() -> Iterator[tuple[Any, ...]]:
        for i, tick in enumerate(ticks):
            doc = dict(template)
            stamp = format_ticks(tick)
            zip_code, city = rng.pick(_PLACES)
            address = dict.fromkeys(ADDRESS.read)
            address.update(
                Id=first_address + i,
                AddressLine1=f"{rng.pick(_STREETS)} {1 + rng.upto(120)}",
                ZipCode=zip_code,
                City=city,
                CountryCode="NO",
                LastChangedDateTimeOffset=stamp,
            )
            if rng.random() < 0.2:
                first, last = rng.pick(_FIRST), rng.pick(_LAST)
                mail = f"{_ascii(first)}.{_ascii(last)}{1 + rng.upto(99)}@{rng.pick(_MAIL_DOMAINS)}"
                doc.update(
                    IsPerson=True,
                    FirstName=first,
                    LastName=last,
                    Name=f"{first} {last}",
                    EmailAddress=mail,
                )
            else:
                name = f"{rng.pick(_PREFIXES)} {rng.pick(_TRADES)} {rng.pick(_FORMS)}"
                domain = _ascii(name.rsplit(" ", 1)[0] if name.endswith(" AS") else name)
                doc.update(
                    Name=name,
                    LegalName=name,
                    OrganizationNumber=_org_number(rng),
                    EmailAddress=f"post@{domain}.no",
                    WebsiteUrl=f"https://www.{domain}.no",
                )
            doc.update(
                Id=first_id + i,
                Number=first_number + i,
                SubledgerAccountId=first_ledger + i,
                PhoneNumber=_phone(rng),
                MailAddress=address,
                InvoiceDeliveryType="PdfByEmail",
                ReminderDeliveryType="PdfByEmail",
                NoticeOfDebtCollectionDeliveryType="PdfByEmail",
                ContactGroupIds=[],
                ContactCreatedDateTimeOffset=stamp,
                CustomerCreatedDateTimeOffset=stamp,
                LastChangedDateTimeOffset=stamp,
            )
            yield _row("Customers", doc, tick)

    return rows()


def _projects(store: Store, conn: Any, rng: _Random, count: int) -> Iterator[tuple[Any, ...]]:
    customers = conn.execute(
        "SELECT id, number, json_extract(doc, '$.Name') FROM customers"
    ).fetchall()
    departments = conn.execute("SELECT id, code FROM departments").fetchall()
    codes = [c for (c,) in conn.execute("SELECT code FROM projects") if c and c.isdigit()]
    next_code = max(map(int, codes), default=1000) + 1
    first_id = store.next_value(conn, "project_id", count)
    template: dict[str, Any] = dict.fromkeys(PROJECT.read)
    template.update(PROJECT_DEFAULTS)
    ticks = store.clock.ticks(count)

    def rows() -> Iterator[tuple[Any, ...]]:
        for i, tick in enumerate(ticks):
            doc = dict(template)
            stamp = format_ticks(tick)
            kind = rng.pick(_PROJECT_KINDS)
            name = kind
            if customers:
                customer_id, number, customer_name = rng.pick(customers)
                doc.update(CustomerId=customer_id, CustomerNo=number)
                name = f"{customer_name} – {kind}"
            if departments:
                department_id, department_code = rng.pick(departments)
                doc.update(DepartmentId=department_id, DepartmentCode=department_code)
            start = date(2025, 1, 1) + timedelta(days=rng.randrange(700))
            status = rng.pick(_STATUSES)
            doc.update(
                Id=first_id + i,
                Code=str(next_code + i),
                Name=name,
                StartDate=start.isoformat(),
                EndDate=(start + timedelta(days=rng.randrange(30, 400))).isoformat(),
                ProjectStatus=status,
                Progress=100 if status == "Complete" else rng.randrange(0, 100, 5),
                IsBillable=rng.random() > 0.15,
                CreatedDateTimeOffset=stamp,
                LastChangedDateTimeOffset=stamp,
            )
            yield _row("Projects", doc, tick)

    return rows()
