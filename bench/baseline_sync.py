"""The bare-script baseline of the initial-sync benchmark: the same HTTP requests, nothing else.

It makes what ``tolken sync --once`` makes for an initial sync into an empty
PMS, one request at a time like tolken: a PowerOffice token, every page of
Departments, Customers and Projects (page size 5000, stopping on the same
``X-Pagination`` signal), one read of the PMS customers, projects and changes
feed, then one ``POST`` per record (departments and customers to
``/customers``, projects to ``/projects``) with an ``Idempotency-Key``.
There is no mapping engine, no store, no matching, no cursor and no retry:
bodies are built by a hand-written dictionary per record, and project
references by a dictionary of the ids just created.

With ``CONCURRENCY`` above 1 the POSTs of each resource go out from that
many threads sharing one keep-alive client (the way tolken's
``pms.max_concurrency`` sends a batch), still departments and customers
before the projects that refer to them.

``python -m bench.baseline_sync PO_URL PMS_API_URL [CONCURRENCY]`` prints ``{"records": N}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tolken.sandbox import credentials

PAGE_SIZE = 5000
_STATUS = {
    "NotStarted": "planned",
    "Active": "active",
    "Complete": "completed",
    "Archived": "archived",
    "Tentative": "tentative",
}


def _pages(http: httpx.Client, url: str, headers: dict[str, str]) -> Iterator[dict[str, Any]]:
    page = 1
    while True:
        response = http.get(
            url, params={"PageNumber": page, "PageSize": PAGE_SIZE}, headers=headers
        )
        response.raise_for_status()
        if response.status_code == 204:
            return
        items = response.json()
        yield from items
        paging = json.loads(response.headers.get("X-Pagination") or "null")
        if not items or (paging is not None and not paging.get("nextPageLink")):
            return
        if paging is None and len(items) < PAGE_SIZE:
            return
        page += 1


def _customer(c: dict[str, Any]) -> dict[str, Any]:
    address = c.get("MailAddress") or {}
    body = {
        "kind": "person" if c.get("IsPerson") else "company",
        "number": str(c["Number"]),
        "name": c.get("Name"),
        "first_name": c.get("FirstName"),
        "last_name": c.get("LastName"),
        "organization_number": c.get("OrganizationNumber"),
        "email": c.get("EmailAddress"),
        "phone": c.get("PhoneNumber"),
        "website": c.get("WebsiteUrl"),
        "active": not c.get("IsArchived"),
        "address": {
            "line1": address.get("AddressLine1"),
            "line2": address.get("AddressLine2"),
            "postal_code": address.get("ZipCode"),
            "city": address.get("City"),
            "country": address.get("CountryCode"),
        },
    }
    return {k: v for k, v in body.items() if v is not None}


def _project(p: dict[str, Any], customers: dict[Any, str], departments: dict[Any, str]) -> Any:
    body = {
        "code": p.get("Code"),
        "name": p.get("Name"),
        "customer_id": customers.get(p.get("CustomerId")),
        "department_id": departments.get(p.get("DepartmentId")),
        "start_date": p.get("StartDate"),
        "end_date": p.get("EndDate"),
        "status": _STATUS.get(str(p.get("ProjectStatus"))),
        "billable": p.get("IsBillable"),
        "progress": p.get("Progress"),
    }
    return {k: v for k, v in body.items() if v is not None}


def _each(
    concurrency: int, post: Callable[[dict[str, Any]], tuple[Any, str]], rows: Iterable[Any]
) -> dict[Any, str]:
    """``post`` every row (at most ``concurrency`` at once); PowerOffice id -> PMS id."""
    if concurrency <= 1:
        return dict(post(row) for row in rows)
    with ThreadPoolExecutor(concurrency) as pool:
        return dict(pool.map(post, rows))


def run(po_url: str, pms_api: str, concurrency: int = 1) -> int:
    """Copy every PowerOffice record into the PMS; the number of records created."""
    limits = httpx.Limits(max_connections=max(concurrency, 1))
    with httpx.Client(timeout=60) as po, httpx.Client(timeout=60, limits=limits) as pms:
        token = po.post(
            f"{po_url}/OAuth/Token",
            auth=(credentials.APPLICATION_KEY, credentials.CLIENT_KEY),
            headers={"Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY},
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        po_headers = {
            "Authorization": f"Bearer {token}",
            "Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY,
        }
        pms.headers["Authorization"] = f"Bearer {credentials.PMS_API_KEY}"
        for path in ("customers", "projects"):
            pms.get(f"{pms_api}/{path}", params={"limit": 500}).raise_for_status()
        pms.get(f"{pms_api}/changes", params={"after": 0, "limit": 1000}).raise_for_status()

        def post(path: str, body: dict[str, Any], key: str) -> str:
            response = pms.post(f"{pms_api}/{path}", json=body, headers={"Idempotency-Key": key})
            response.raise_for_status()
            return str(response.json()["id"])

        def department(d: dict[str, Any]) -> tuple[Any, str]:
            body = {"kind": "department", "number": d.get("Code"), "name": d.get("Name")}
            body["active"] = bool(d.get("IsActive", True))
            return d["Id"], post("customers", body, f"dep-{d['Id']}")

        def customer(c: dict[str, Any]) -> tuple[Any, str]:
            return c["Id"], post("customers", _customer(c), f"cus-{c['Id']}")

        departments = _each(
            concurrency, department, _pages(po, f"{po_url}/v2/Departments", po_headers)
        )
        customers = _each(concurrency, customer, _pages(po, f"{po_url}/v2/Customers", po_headers))

        def project(p: dict[str, Any]) -> tuple[Any, str]:
            return p["Id"], post("projects", _project(p, customers, departments), f"pro-{p['Id']}")

        projects = _each(concurrency, project, _pages(po, f"{po_url}/v2/Projects", po_headers))
    return len(departments) + len(customers) + len(projects)


if __name__ == "__main__":
    width = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    print(json.dumps({"records": run(sys.argv[1], sys.argv[2], width)}))
