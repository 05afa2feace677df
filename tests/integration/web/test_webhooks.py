"""POST /webhooks/pms: signed deliveries are handed on; bad, stale and replayed ones get 401."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from integration.web_harness import make_config
from tolken.connectors.pms import sign_webhook
from tolken.store import open_store
from tolken.web import create_app

SECRET = "hook-secret-1"  # make_config's serve.webhook_secret
ITEM = {"seq": 7, "type": "customer", "id": "cus_1", "op": "upsert"}


class Received(list[dict[str, Any]]):
    def __call__(self, item: dict[str, Any]) -> None:
        self.append(item)


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
def client(tmp_path: Path, received: Received) -> Iterator[TestClient]:
    config = make_config(tmp_path)
    with open_store(config.store) as store:
        yield TestClient(create_app(config, store.for_tenant(config.tenant), on_webhook=received))


def _post(
    client: TestClient, body: bytes, *, secret: str = SECRET, timestamp: int | None = None
) -> Any:
    headers = sign_webhook(secret, body, timestamp=timestamp)
    return client.post("/webhooks/pms", content=body, headers=headers)


def test_a_signed_delivery_is_handed_to_the_loop(client: TestClient, received: Received) -> None:
    """A delivery signed with the secret is accepted (202) without the dashboard token."""
    answer = _post(client, json.dumps(ITEM).encode())
    assert answer.status_code == 202
    assert received == [ITEM]


def test_a_wrong_signature_is_refused(client: TestClient, received: Received) -> None:
    """Signed with another secret, or unsigned: 401 and nothing handed on."""
    body = json.dumps(ITEM).encode()
    assert _post(client, body, secret="other-secret").status_code == 401
    assert client.post("/webhooks/pms", content=body).status_code == 401
    assert received == []


def test_a_tampered_body_is_refused(client: TestClient, received: Received) -> None:
    """A body changed after signing does not verify."""
    headers = sign_webhook(SECRET, json.dumps(ITEM).encode())
    tampered = json.dumps({**ITEM, "id": "cus_2"}).encode()
    assert client.post("/webhooks/pms", content=tampered, headers=headers).status_code == 401
    assert received == []


def test_a_delivery_older_than_five_minutes_is_refused(
    client: TestClient, received: Received
) -> None:
    """A correctly signed delivery from six minutes ago is a replay: 401."""
    answer = _post(client, json.dumps(ITEM).encode(), timestamp=int(time.time()) - 360)
    assert answer.status_code == 401
    assert "old" in answer.json()["error"]
    assert received == []


def test_the_same_delivery_twice_is_refused(client: TestClient, received: Received) -> None:
    """Replaying a captured delivery within the window: the second copy gets 401."""
    body = json.dumps(ITEM).encode()
    headers = sign_webhook(SECRET, body)
    assert client.post("/webhooks/pms", content=body, headers=headers).status_code == 202
    again = client.post("/webhooks/pms", content=body, headers=headers)
    assert again.status_code == 401
    assert "replayed" in again.json()["error"]
    assert received == [ITEM]


def test_a_signed_body_that_is_not_a_change_item_is_a_400(
    client: TestClient, received: Received
) -> None:
    """Valid signature, but not a changes-feed item: 400, nothing handed on."""
    assert _post(client, b"[1, 2]").status_code == 400
    assert _post(client, b'{"seq": 1}').status_code == 400
    assert received == []


def test_rejections_are_counted_in_metrics(client: TestClient) -> None:
    """tolken_webhooks_total counts accepted and rejected deliveries."""
    _post(client, json.dumps(ITEM).encode())
    _post(client, json.dumps(ITEM).encode(), secret="wrong")
    text = client.get("/metrics", headers={"Authorization": "Bearer dash-token-0123456789"}).text
    assert 'tolken_webhooks_total{outcome="accepted"} 1.0' in text
    assert 'tolken_webhooks_total{outcome="rejected"} 1.0' in text
