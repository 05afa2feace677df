"""PowerOffice contract subjects: the simulator in-process and over real loopback HTTP,
each answering PascalCase and camelCase."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from starlette.testclient import TestClient

from contract.subject import ContractSubject, ResourceCase, SandboxControl, SubjectHandle
from loopback import serve
from tolken.config import PowerOfficeSettings
from tolken.connectors._http import RetryPolicy
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.connectors.ratelimit import memory_limiter
from tolken.sandbox import credentials
from tolken.sandbox.poweroffice import create_app

MAX_ATTEMPTS = 3
BAD_SECRET = "not-the-client-key-0451"


def _settings(base: str, page_size: int | None, valid: bool) -> PowerOfficeSettings:
    return PowerOfficeSettings(
        base_url=f"{base}/v2",
        token_url=f"{base}/OAuth/Token",
        application_key=credentials.APPLICATION_KEY,
        client_key=credentials.CLIENT_KEY if valid else BAD_SECRET,
        subscription_key=credentials.SUBSCRIPTION_KEY,
        page_size=page_size or 5000,
        timeout_seconds=10,
    )


def _handle(http: httpx.Client, base: str, *, shared_http: bool) -> SubjectHandle:
    def connect(page_size: int | None = None, valid_credentials: bool = True) -> PowerOfficeClient:
        return PowerOfficeClient(
            _settings(base, page_size, valid_credentials),
            http=http if shared_http else None,
            # A budget of its own, fast: the simulator's own limit is off for the suite.
            rate_limiter=memory_limiter(1000.0),
            retry=RetryPolicy(attempts=MAX_ATTEMPTS),
        )

    return SubjectHandle(
        control=SandboxControl(http, base, "/v2"),
        connect=connect,
        max_attempts=MAX_ATTEMPTS,
        bad_secret=BAD_SECRET,
    )


def _in_process(camel_case: bool) -> Any:
    @contextmanager
    def start() -> Iterator[SubjectHandle]:
        app = create_app(rate_limit_per_second=None, camel_case=camel_case)
        with TestClient(app) as http:
            yield _handle(http, "http://testserver", shared_http=True)

    return start


def _loopback(camel_case: bool) -> Any:
    @contextmanager
    def start() -> Iterator[SubjectHandle]:
        app = create_app(rate_limit_per_second=None, camel_case=camel_case)
        with serve(app) as url, httpx.Client(timeout=10) as control_http:
            yield _handle(control_http, url, shared_http=False)

    return start


def _department(token: str) -> tuple[dict[str, Any], str]:
    code = f"D{token}"
    return {"Code": code, "Name": f"Avdeling {token}", "IsActive": True}, code


def _customer(token: str) -> tuple[dict[str, Any], str]:
    data = {
        "Name": f"Fjordkraft {token} AS",
        "EmailAddress": f"post{token}@example.no",
        "MailAddress.AddressLine1": "Storgata 1",
        "MailAddress.ZipCode": "0150",
        "MailAddress.City": "Oslo",
    }
    return data, f"tolken-contract-{token}"


def _project(token: str) -> tuple[dict[str, Any], str]:
    code = f"P{token}"
    return {"Code": code, "Name": f"Prosjekt {token}", "Progress": 10}, code


RESOURCES = [
    ResourceCase(
        "Departments",
        _department,
        change={"Name": "Omdøpt avdeling", "IsActive": False},
        invalid_change={"IsActive": "not a boolean"},
    ),
    ResourceCase(
        "Customers",
        _customer,
        change={
            "PhoneNumber": "+4712345678",
            "MailAddress.City": "Bergen",
            "MailAddress.ZipCode": "5003",
        },
        invalid_change={"Allowance": 5000},
    ),
    ResourceCase(
        "Projects",
        _project,
        change={"Name": "Nytt navn", "Progress": 55},
        invalid_change={"Progress": 150},
    ),
]

SUBJECTS = [
    ContractSubject(f"poweroffice-{transport}-{casing}", factory(camel), RESOURCES)
    for transport, factory in (("inprocess", _in_process), ("loopback", _loopback))
    for casing, camel in (("pascal", False), ("camel", True))
]
