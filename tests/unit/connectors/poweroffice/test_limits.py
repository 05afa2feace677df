"""Values over the spec's maxLength are refused before a PowerOffice write."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from tolken.connectors import _http
from tolken.connectors._http import RetryPolicy
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.connectors.ratelimit import memory_limiter
from tolken.errors import RecordError, ValidationFailed
from tolken.sandbox.poweroffice import create_app
from unit.connectors.poweroffice.test_client import settings


@pytest.fixture
def sim() -> Iterator[TestClient]:
    with TestClient(create_app(rate_limit_per_second=None)) as http, _http.testing():
        yield http


def _client(http: httpx.Client) -> PowerOfficeClient:
    return PowerOfficeClient(
        settings(), http=http, rate_limiter=memory_limiter(1e3), retry=RetryPolicy(attempts=1)
    )


def _writes(sim: TestClient) -> list[str]:
    requests: dict[str, int] = sim.get("/_sandbox/stats").json()["requests"]
    return [key for key in requests if key.startswith(("POST /v2/C", "PATCH"))]


def test_a_create_with_an_over_long_city_is_refused_unsent() -> None:
    """A 101-character MailAddress.City (max 100) is a RecordError naming the limit; unsent."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    po = _client(httpx.Client(transport=httpx.MockTransport(handler)))
    data = {"Name": "Acme AS", "MailAddress.City": "x" * 101}
    with pytest.raises(ValidationFailed) as info:
        po.create("Customers", data, idempotency_key="k")
    assert isinstance(info.value, RecordError)
    assert "MailAddress.City" in info.value.message
    assert "at most 100" in info.value.message
    assert [e.field for e in info.value.field_errors] == ["MailAddress.City"]
    assert sent == []


def test_an_update_with_an_over_long_address_line_is_refused_unsent(sim: TestClient) -> None:
    """A PATCH setting a 5 MB AddressLine1 (maxLength 200) is refused; no PATCH is sent."""
    po = _client(sim)
    customer = po.create("Customers", {"Name": "Acme AS"}, idempotency_key="k")
    with pytest.raises(ValidationFailed, match=r"MailAddress\.AddressLine1.*at most 200"):
        po.update("Customers", customer.id, {"mailAddress": {"addressLine1": "y" * 5_000_000}})
    assert not any(key.startswith("PATCH") for key in _writes(sim))


def test_values_at_the_limit_are_written(sim: TestClient) -> None:
    """A city of exactly 100 characters and a long Name (no documented limit) are written."""
    po = _client(sim)
    data = {"Name": "N" * 2000, "MailAddress.City": "c" * 100, "MailAddress.ZipCode": "0150"}
    created = po.create("Customers", data, idempotency_key="k")
    assert created.data["MailAddress"]["City"] == "c" * 100
    assert created.data["Name"] == "N" * 2000
