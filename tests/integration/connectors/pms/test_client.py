"""The PMS connector against the reference PMS over real loopback HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopback import serve
from tolken.config import PMSSettings
from tolken.conformance._receiver import WebhookReceiver
from tolken.connectors import _http
from tolken.connectors.pms import PMSClient, WebhookRejected, verify_webhook
from tolken.errors import NotFound, Retriable, StaleVersion, ValidationFailed
from tolken.sandbox.pms import PMS_API_KEY, create_app


@pytest.fixture(scope="module")
def pms_url() -> Iterator[str]:
    with serve(create_app(webhook_base_delay=0.05)) as url:
        yield url


@pytest.fixture
def url(pms_url: str) -> str:
    httpx.post(f"{pms_url}/_sandbox/reset", json={}).raise_for_status()
    return pms_url


def _client(url: str, **settings: object) -> PMSClient:
    return PMSClient(
        PMSSettings.model_validate(
            {"base_url": f"{url}/api/v1", "api_key": PMS_API_KEY, "timeout_seconds": 5, **settings}
        )
    )


def test_record_lifecycle_with_optimistic_concurrency(url: str) -> None:
    """Create, read, conditional update, a stale update refused with 412, delete, then 404."""
    with _client(url) as pms:
        created = pms.create(
            "customers", {"kind": "company", "name": "Nordlys AS"}, idempotency_key="k1"
        )
        assert created.version == 1
        assert pms.get("customers", created.id).data["name"] == "Nordlys AS"
        updated = pms.update("customers", created.id, {"phone": "+47 1"}, version=created.version)
        assert updated.version == 2
        assert updated.changed_at is not None
        assert created.changed_at is not None
        assert updated.changed_at > created.changed_at
        with pytest.raises(StaleVersion) as stale:
            pms.update("customers", created.id, {"phone": "+47 2"}, version=created.version)
        assert stale.value.current_version == 2
        assert pms.get("customers", created.id).data["phone"] == "+47 1"
        cleared = pms.update("customers", created.id, {"phone": None})
        assert cleared.data["phone"] is None
        pms.delete("customers", created.id)
        with pytest.raises(NotFound):
            pms.get("customers", created.id)


def test_field_errors_are_the_pms_words(url: str) -> None:
    """A refused project carries exactly the field errors the PMS sent."""
    body = {"name": "Broken", "progress": 150, "start_date": "2026-02-01", "end_date": "2026-01-01"}
    raw = httpx.post(
        f"{url}/api/v1/projects", json=body, headers={"Authorization": f"Bearer {PMS_API_KEY}"}
    ).json()["errors"]
    with _client(url) as pms, pytest.raises(ValidationFailed) as info:
        pms.create("projects", body | {"external_ref": "x"}, idempotency_key="bad-1")
    assert [(e.field, e.message) for e in info.value.field_errors] == [
        (e["field"], e["message"]) for e in raw
    ]
    assert info.value.status == 422


def test_registered_webhook_deliveries_verify(url: str) -> None:
    """A webhook registered through the connector delivers changes that verify_webhook accepts."""
    with WebhookReceiver() as receiver, _client(url) as pms:
        pms.register_webhook(receiver.url, "s3cret")
        record = pms.create("customers", {"kind": "person", "name": "Kari"}, idempotency_key="w")
        delivery = receiver.wait_for(lambda d: record.id.encode() in d.body, timeout=5)
        assert delivery is not None
        verify_webhook("s3cret", delivery.headers, delivery.body)
        assert json.loads(delivery.body)["op"] == "upsert"
        with pytest.raises(WebhookRejected, match="does not match"):
            verify_webhook("s3cret", delivery.headers, delivery.body.replace(b"upsert", b"delete"))


@pytest.mark.slow
def test_creates_under_faults_and_timeouts_never_duplicate(url: str) -> None:
    """With 40 % of requests failing or hanging, every create lands exactly once."""
    httpx.post(
        f"{url}/_sandbox/faults",
        json={
            "rate": 0.3,
            "statuses": [429, 500, 503],
            "drop_rate": 0.1,
            "drop_hang_seconds": 2,
            "seed": 7,
        },
    ).raise_for_status()
    names = [f"Faulty {n}" for n in range(20)]
    with _http.testing(), _client(url, timeout_seconds=0.3) as pms:
        for name in names:
            # As the engine does: a create that still fails after the connector's
            # retries is tried again later with the same key.
            for _ in range(5):
                try:
                    pms.create("customers", {"kind": "company", "name": name}, idempotency_key=name)
                    break
                except Retriable:
                    continue
    httpx.post(f"{url}/_sandbox/faults", json={}).raise_for_status()
    with _client(url) as pms:
        stored = [r.data["name"] for r in pms.list("customers")]
        found = pms.find_by_idempotency_key("customers", "Faulty 3")
    assert sorted(stored) == sorted(names)
    assert found is not None
    assert found.data["name"] == "Faulty 3"


def test_ensure_webhook_replaces_an_earlier_registration(url: str) -> None:
    """Registering the same receiver again (a restart) leaves one webhook, with the new secret."""
    with WebhookReceiver() as receiver, _client(url) as pms:
        pms.ensure_webhook(receiver.url, "old-secret")
        pms.ensure_webhook(receiver.url, "new-secret")
        hooks = pms.webhooks()
        assert hooks is not None
        assert [h["url"] for h in hooks] == [receiver.url]
        record = pms.create("customers", {"kind": "company", "name": "Once"}, idempotency_key="o")
        delivery = receiver.wait_for(lambda d: record.id.encode() in d.body, timeout=5)
        assert delivery is not None
        verify_webhook("new-secret", delivery.headers, delivery.body)
        time.sleep(0.3)  # a duplicate delivery would arrive right behind the first
        assert sum(record.id.encode() in d.body for d in receiver.deliveries) == 1


class _SetsCookies:
    """The reference PMS behind a layer that sets a cookie on every answer and notes the
    ``Cookie`` header of every request it receives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cookies: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            cookie = dict(scope["headers"]).get(b"cookie")
            self.cookies.append(cookie.decode() if cookie is not None else None)

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = (b"set-cookie", b"session=abc; Path=/")
                message = {**message, "headers": [*message.get("headers", []), cookie]}
            await send(message)

        await self.app(scope, receive, with_cookie)


def test_the_client_the_connector_makes_sends_no_cookie_back() -> None:
    """The PMS authenticates by bearer key: a cookie it sets never travels with a later request."""
    app = _SetsCookies(create_app())
    with serve(app) as url, _client(url) as pms:
        made = pms.create(
            "customers", {"kind": "company", "name": "Nordlys AS"}, idempotency_key="c"
        )
        assert pms.get("customers", made.id).data["name"] == "Nordlys AS"
    assert app.cookies == [None, None]
