"""PMS contract subjects: the PMS connector against the reference PMS, in-process and over
real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from starlette.testclient import TestClient

from contract.subject import ContractSubject, ResourceCase, SandboxControl, SubjectHandle
from loopback import serve
from tolken.config import PMSSettings
from tolken.connectors._http import RetryPolicy
from tolken.connectors.pms import PMSClient
from tolken.sandbox.pms import PMS_API_KEY, create_app

BAD_SECRET = "not-the-pms-key-7731"


def _handle(http: httpx.Client, base: str, *, shared_http: bool) -> SubjectHandle:
    def connect(page_size: int | None = None, valid_credentials: bool = True) -> PMSClient:
        settings = PMSSettings(
            base_url=f"{base}/api/v1",
            api_key=PMS_API_KEY if valid_credentials else BAD_SECRET,
            page_size=page_size or 500,
            timeout_seconds=10,
        )
        return PMSClient(settings, http=http if shared_http else None)

    return SubjectHandle(
        control=SandboxControl(http, base, "/api/v1"),
        connect=connect,
        max_attempts=RetryPolicy().attempts,
        bad_secret=BAD_SECRET,
    )


@contextmanager
def _in_process() -> Iterator[SubjectHandle]:
    with TestClient(create_app()) as http:
        yield _handle(http, "http://testserver", shared_http=True)


@contextmanager
def _loopback() -> Iterator[SubjectHandle]:
    with serve(create_app()) as url, httpx.Client(timeout=10) as control_http:
        yield _handle(control_http, url, shared_http=False)


def _customer(token: str) -> tuple[dict[str, Any], str]:
    data = {
        "kind": "company",
        "name": f"Fjordkraft {token} AS",
        "email": f"post{token}@example.no",
        "address.line1": "Storgata 1",
        "address.postal_code": "0150",
        "address.city": "Oslo",
    }
    return data, f"tolken-contract-{token}"


def _project(token: str) -> tuple[dict[str, Any], str]:
    return {"code": f"P{token}", "name": f"Prosjekt {token}", "progress": 10}, f"prj-{token}"


RESOURCES = [
    ResourceCase(
        "customers",
        _customer,
        change={"phone": "+4712345678", "address.city": "Bergen", "address.postal_code": "5003"},
        invalid_change={"kind": "not-a-kind"},
        missing_id="cus_000000000000",
    ),
    ResourceCase(
        "projects",
        _project,
        change={"name": "Nytt navn", "progress": 55, "status": "active"},
        invalid_change={"progress": 150},
        missing_id="prj_000000000000",
    ),
]

SUBJECTS = [
    ContractSubject("pms-inprocess", _in_process, RESOURCES),
    ContractSubject("pms-loopback", _loopback, RESOURCES),
]
