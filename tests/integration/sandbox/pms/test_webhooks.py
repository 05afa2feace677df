"""Reference PMS webhooks over loopback HTTP: registration, signatures, retries, shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from loopback import serve
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import create_app

AUTH = {"Authorization": f"Bearer {PMS_API_KEY}"}
SECRET = "hemmelig"


@dataclass
class Receiver:
    """A webhook receiver that records deliveries and can fail or stall on purpose."""

    fail_first: int = 0
    delay: float = 0.0
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.calls.append((headers, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = 500 if len(self.calls) <= self.fail_first else 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def pms() -> Iterator[httpx.Client]:
    app = create_app(webhook_max_attempts=3, webhook_base_delay=0.05)
    with (
        serve(app) as url,
        httpx.Client(base_url=f"{url}/api/v1", headers=AUTH, timeout=10) as client,
    ):
        yield client


def _register(pms: httpx.Client, url: str) -> dict[str, Any]:
    response = pms.post("/webhooks", json={"url": f"{url}/hook", "secret": SECRET})
    assert response.status_code == 201
    return dict(response.json())


def test_webhooks_can_be_registered_listed_and_deleted(pms: httpx.Client) -> None:
    """POST 201 (no secret echoed), GET lists it, DELETE 204, then 404."""
    hook = _register(pms, "http://127.0.0.1:9")
    assert "secret" not in hook
    assert pms.get("/webhooks").json()["items"] == [hook]
    assert pms.delete(f"/webhooks/{hook['id']}").status_code == 204
    assert pms.get("/webhooks").json()["items"] == []
    assert pms.delete(f"/webhooks/{hook['id']}").status_code == 404


def test_webhook_registration_is_validated(pms: httpx.Client) -> None:
    """A non-http URL, an empty secret and unknown fields are field-level 422s."""
    response = pms.post("/webhooks", json={"url": "ftp://x", "secret": "", "x": 1})
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"url", "secret", "x"}


def test_each_change_is_delivered_signed(pms: httpx.Client) -> None:
    """The body is the feed item; X-PMS-Signature is HMAC-SHA256(secret, ts + "." + body)."""
    receiver = Receiver()
    with serve(receiver) as url:
        _register(pms, url)
        record = pms.post("/customers", json={"kind": "company", "name": "A AS"}).json()
        pms.delete(f"/customers/{record['id']}")
        _wait_for(lambda: len(receiver.calls) == 2)
    feed = pms.get("/changes").json()["items"]
    for (headers, body), item in zip(receiver.calls, feed, strict=True):
        assert json.loads(body) == item
        timestamp = headers["x-pms-timestamp"]
        assert abs(int(timestamp) - time.time()) < 30
        expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        assert headers["x-pms-signature"] == "sha256=" + expected.hexdigest()
    assert [json.loads(b)["op"] for _, b in receiver.calls] == ["upsert", "delete"]


def test_a_url_no_client_can_send_to_does_not_stop_deliveries(pms: httpx.Client) -> None:
    """A registered URL the document allows but httpx cannot parse fails its own deliveries only."""
    receiver = Receiver()
    bad = pms.post("/webhooks", json={"url": "http://\x1e\x8a", "secret": SECRET})
    assert bad.status_code == 201
    with serve(receiver) as url:
        _register(pms, url)
        pms.post("/customers", json={"kind": "company", "name": "A AS"})
        pms.post("/customers", json={"kind": "company", "name": "B AS"})
        _wait_for(lambda: len(receiver.calls) == 2)


def test_failed_deliveries_are_retried_until_they_succeed(pms: httpx.Client) -> None:
    """A receiver answering 500 twice gets the same item a third time, then no more."""
    receiver = Receiver(fail_first=2)
    with serve(receiver) as url:
        _register(pms, url)
        pms.post("/customers", json={"kind": "company", "name": "A AS"})
        _wait_for(lambda: len(receiver.calls) == 3)
        time.sleep(0.3)
    assert len(receiver.calls) == 3
    assert len({body for _, body in receiver.calls}) == 1


def test_retries_are_bounded(pms: httpx.Client) -> None:
    """A receiver that always fails gets max_attempts tries and then is left alone."""
    receiver = Receiver(fail_first=1000)
    with serve(receiver) as url:
        _register(pms, url)
        pms.post("/customers", json={"kind": "company", "name": "A AS"})
        _wait_for(lambda: len(receiver.calls) == 3)
        time.sleep(0.5)
    assert len(receiver.calls) == 3


def test_a_slow_receiver_does_not_slow_down_writes(pms: httpx.Client) -> None:
    """Writes return promptly while the receiver takes a second per delivery."""
    receiver = Receiver(delay=1.0)
    with serve(receiver) as url:
        _register(pms, url)
        started = time.monotonic()
        for i in range(3):
            assert pms.post("/projects", json={"name": f"P{i}"}).status_code == 201
        assert time.monotonic() - started < 0.8
        _wait_for(lambda: len(receiver.calls) >= 1)


def test_shutdown_stops_the_delivery_worker_promptly() -> None:
    """Stopping the server stops the webhook thread even with deliveries pending."""
    receiver = Receiver(fail_first=1000)
    app = create_app(webhook_max_attempts=50, webhook_base_delay=0.05)
    with serve(receiver) as hook_url:
        with (
            serve(app) as url,
            httpx.Client(base_url=f"{url}/api/v1", headers=AUTH) as client,
        ):
            _register(client, hook_url)
            for i in range(5):
                client.post("/projects", json={"name": f"P{i}"})
            _wait_for(lambda: len(receiver.calls) >= 2)
            started = time.monotonic()
        assert time.monotonic() - started < 5
        assert not any(t.name == "pms-webhooks" and t.is_alive() for t in threading.enumerate())
        calls = len(receiver.calls)
        time.sleep(0.3)
        assert len(receiver.calls) == calls
