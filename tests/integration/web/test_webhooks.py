"""POST /webhooks/pms: signed deliveries are handed on; bad, stale and replayed ones get 401."""

from __future__ import annotations

import gc
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from integration.web_harness import WEBHOOK_SECRET, make_config
from loopback import serve
from tolken.connectors.pms import sign_webhook
from tolken.store import open_store
from tolken.web import create_app

SECRET = WEBHOOK_SECRET
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


# As they arrive on the wire: header values are bytes, read as latin-1.
BAD_TIMESTAMPS = {
    "superscript-digit": "1700000000²".encode("latin-1"),  # str.isdigit() says yes
    "arabic-indic-digits": "١٧٠٠٠٠٠٠٠٠".encode(),
    "fraction": b"17000000.5",
    "negative": b"-1700000000",
    "ten-to-the-400": str(10**400).encode(),
    "5000-digits": b"9" * 5000,  # past int()'s digit limit
    "empty": b"",
}


@pytest.fixture(scope="module")
def served_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app on a real loopback port (bytes reach it exactly as sent)."""
    config = make_config(tmp_path_factory.mktemp("served"))
    with (
        open_store(config.store) as store,
        serve(create_app(config, store.for_tenant(config.tenant))) as url,
    ):
        yield url


@pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS.values(), ids=BAD_TIMESTAMPS.keys())
def test_a_malformed_timestamp_is_a_401_not_a_crash(served_url: str, timestamp: bytes) -> None:
    """A non-ASCII, fractional, negative or absurd X-PMS-Timestamp gets 401, never a 500."""
    body = json.dumps(ITEM).encode()
    conn = http.client.HTTPConnection(urlsplit(served_url).netloc, timeout=10)
    try:
        conn.putrequest("POST", "/webhooks/pms")
        conn.putheader("X-PMS-Timestamp", timestamp)
        conn.putheader("X-PMS-Signature", b"sha256=" + b"0" * 64)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        status, error = answer.status, json.loads(answer.read())["error"]
    finally:
        conn.close()
    assert status == 401
    assert "X-PMS-Timestamp" in error


def test_a_replay_after_a_restart_is_refused(store_url: str, received: Received) -> None:
    """A delivery taken in, replayed within five minutes to a new process on the same store: 401."""
    config = make_config(Path("/nonexistent")).model_copy(update={"store": store_url})
    body = json.dumps(ITEM).encode()
    headers = sign_webhook(SECRET, body)
    with open_store(store_url) as store:
        first = TestClient(create_app(config, store.for_tenant(config.tenant), on_webhook=received))
        assert first.post("/webhooks/pms", content=body, headers=headers).status_code == 202
    with open_store(store_url) as store:  # a restart: a new app on the same store
        again = TestClient(create_app(config, store.for_tenant(config.tenant), on_webhook=received))
        answer = again.post("/webhooks/pms", content=body, headers=headers)
        assert answer.status_code == 401
        assert "replayed" in answer.json()["error"]
        # Another tenant's receiver on the same store has its own deliveries.
        other = config.model_copy(update={"tenant": "other"})
        elsewhere = TestClient(create_app(other, store.for_tenant("other"), on_webhook=received))
        assert elsewhere.post("/webhooks/pms", content=body, headers=headers).status_code == 202
    assert received == [ITEM, ITEM]


def test_the_replay_cache_forgets_deliveries_past_the_window(tmp_path: Path) -> None:
    """Remembered deliveries are pruned once their timestamp left the five-minute window."""
    config = make_config(tmp_path)
    now = [float(int(time.time()))]
    with open_store(config.store) as store:
        client = TestClient(
            create_app(config, store.for_tenant(config.tenant), clock=lambda: now[0])
        )
        for n in range(3):
            body = json.dumps({**ITEM, "seq": n}).encode()
            headers = sign_webhook(SECRET, body, timestamp=int(now[0]))
            assert client.post("/webhooks/pms", content=body, headers=headers).status_code == 202
        now[0] += 301
        body = json.dumps({**ITEM, "seq": 9}).encode()
        headers = sign_webhook(SECRET, body, timestamp=int(now[0]))
        assert client.post("/webhooks/pms", content=body, headers=headers).status_code == 202
        with store.engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar_one()
        assert count == 1


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    chunk = b"x" * size
    for _ in range(total // size):
        yield chunk


def test_a_20_mb_webhook_is_refused_before_it_is_read(tmp_path: Path, received: Received) -> None:
    """20 MB posted with a Content-Length or chunked: 413, and the server's memory does not grow."""
    config = make_config(tmp_path)
    size = 20 * 1024 * 1024
    with (
        open_store(config.store) as store,
        serve(create_app(config, store.for_tenant(config.tenant), on_webhook=received)) as url,
        httpx.Client(timeout=60) as http,
    ):
        # Warm up the server and client, so the baseline holds their buffers.
        _post_to(http, url, b"{}")
        before = _rss()
        declared = http.post(
            f"{url}/webhooks/pms",
            content=_chunks(size),
            headers={"Content-Length": str(size), **sign_webhook(SECRET, b"")},
        )
        chunked = http.post(
            f"{url}/webhooks/pms", content=_chunks(size), headers=sign_webhook(SECRET, b"")
        )
        grown = _rss() - before
    assert declared.status_code == 413
    assert chunked.status_code == 413
    assert "larger than 1048576 bytes" in chunked.json()["error"]
    assert grown < 8 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MiB"
    assert received == []


def test_a_body_just_under_the_cap_is_still_read(tmp_path: Path) -> None:
    """The cap is 1 MiB: a signed body of 1 MiB is verified as usual (here: not an item, 400)."""
    config = make_config(tmp_path)
    body = json.dumps({"pad": "x" * (1024 * 1024 - 20)}).encode()
    assert len(body) <= 1024 * 1024
    with open_store(config.store) as store:
        client = TestClient(create_app(config, store.for_tenant(config.tenant)))
        answer = client.post("/webhooks/pms", content=body, headers=sign_webhook(SECRET, body))
        assert answer.status_code == 400


def _post_to(http: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return http.post(f"{url}/webhooks/pms", content=body, headers=sign_webhook(SECRET, body))
