"""Reference PMS: every API key sandbox-pms-key[-name] is a workspace of its own (DESIGN §7)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback import serve
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import create_app

ALPHA = f"{PMS_API_KEY}-alpha"
BETA = f"{PMS_API_KEY}-beta"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def base_url() -> Iterator[str]:
    with serve(create_app(webhook_base_delay=0.05)) as url:
        yield url


def test_records_feed_and_idempotency_are_per_workspace(base_url: str) -> None:
    """Each workspace lists and gets only its records, numbers its feed from 1, keys its own."""
    api = f"{base_url}/api/v1"
    body = {"kind": "company", "name": "Fjord AS"}
    once = {**_auth(ALPHA), "Idempotency-Key": "create-1"}
    first = httpx.post(f"{api}/customers", json=body, headers=once)
    httpx.patch(f"{api}/customers/{first.json()['id']}", json={"name": "Fjord 2 AS"}, headers=once)
    other = httpx.post(
        f"{api}/customers", json=body, headers={**_auth(BETA), "Idempotency-Key": "create-1"}
    )
    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other.headers
    assert other.json()["id"] != first.json()["id"]
    beta_items = httpx.get(f"{api}/customers", headers=_auth(BETA)).json()["items"]
    assert [c["id"] for c in beta_items] == [other.json()["id"]]
    assert httpx.get(f"{api}/customers", headers=_auth(PMS_API_KEY)).json()["items"] == []
    assert (
        httpx.get(f"{api}/customers/{first.json()['id']}", headers=_auth(BETA)).status_code == 404
    )
    assert (
        httpx.delete(f"{api}/customers/{first.json()['id']}", headers=_auth(BETA)).status_code
        == 404
    )
    alpha_feed = httpx.get(f"{api}/changes", headers=_auth(ALPHA)).json()
    beta_feed = httpx.get(f"{api}/changes", headers=_auth(BETA)).json()
    assert [i["seq"] for i in alpha_feed["items"]] == [1, 2]
    assert [(i["seq"], i["id"]) for i in beta_feed["items"]] == [(1, other.json()["id"])]


def test_webhooks_fire_only_for_their_workspace(base_url: str) -> None:
    """A receiver registered in one workspace gets its changes and none of another's."""
    received: list[bytes] = []

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        received.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    api = f"{base_url}/api/v1"
    with serve(receiver) as hook_url:
        hook = {"url": hook_url, "secret": "hemmelig"}
        assert httpx.post(f"{api}/webhooks", json=hook, headers=_auth(ALPHA)).status_code == 201
        assert httpx.get(f"{api}/webhooks", headers=_auth(BETA)).json() == {"items": []}
        httpx.post(
            f"{api}/customers", json={"kind": "company", "name": "B AS"}, headers=_auth(BETA)
        )
        mine = httpx.post(
            f"{api}/customers", json={"kind": "company", "name": "A AS"}, headers=_auth(ALPHA)
        ).json()
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
    assert len(received) == 1
    assert mine["id"].encode() in received[0]


def test_stats_seed_and_reset_by_api_key(base_url: str) -> None:
    """Stats narrow by ?api_key=, seed and reset take api_key; others keep their data."""
    api = f"{base_url}/api/v1"
    seeded = httpx.post(f"{base_url}/_sandbox/seed", json={"api_key": BETA, "customers": 3})
    assert seeded.status_code == 200
    httpx.post(f"{base_url}/_sandbox/seed", json={"api_key": ALPHA, "customers": 1})
    assert len(httpx.get(f"{api}/customers", headers=_auth(BETA)).json()["items"]) == 3
    assert httpx.get(f"{api}/customers", headers=_auth(PMS_API_KEY)).json()["items"] == []
    httpx.get(f"{api}/customers", headers=_auth("sandbox-pms-keyX"))
    beta = httpx.get(f"{base_url}/_sandbox/stats", params={"api_key": BETA}).json()
    assert beta == {"requests": {"GET /api/v1/customers": 1}, "statuses": {"200": 1}}
    everything = httpx.get(f"{base_url}/_sandbox/stats").json()
    assert everything["statuses"] == {"200": 2, "401": 1}
    assert httpx.post(f"{base_url}/_sandbox/reset", json={"api_key": BETA}).status_code == 200
    assert httpx.get(f"{api}/customers", headers=_auth(BETA)).json()["items"] == []
    assert len(httpx.get(f"{api}/customers", headers=_auth(ALPHA)).json()["items"]) == 1
    assert httpx.post(f"{base_url}/_sandbox/reset", json={"api_key": "nope"}).status_code == 400


def test_unknown_keys_are_refused(base_url: str) -> None:
    """Keys that are not sandbox-pms-key or sandbox-pms-key-<name> get 401."""
    for key in ("sandbox-pms-keyX", f"{PMS_API_KEY}-", "pms-key", "x-sandbox-pms-key"):
        response = httpx.get(f"{base_url}/api/v1/customers", headers=_auth(key))
        assert response.status_code == 401, key


def test_workspaces_survive_a_restart(tmp_path: Path) -> None:
    """A named workspace's records are back after a restart on the same data dir."""
    with serve(create_app(tmp_path)) as url:
        httpx.post(
            f"{url}/api/v1/customers", json={"kind": "person", "name": "Kari"}, headers=_auth(ALPHA)
        )
    with serve(create_app(tmp_path)) as url:
        items = httpx.get(f"{url}/api/v1/customers", headers=_auth(ALPHA)).json()["items"]
        assert [c["name"] for c in items] == ["Kari"]
        assert (
            httpx.get(f"{url}/api/v1/customers", headers=_auth(PMS_API_KEY)).json()["items"] == []
        )
