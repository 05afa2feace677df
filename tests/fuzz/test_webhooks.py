"""Random webhook deliveries against the real dashboard app: never a 5xx, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from fuzz.conftest import FUZZ
from integration.web_harness import WEBHOOK_SECRET, make_config
from tolken.connectors.pms import sign_webhook
from tolken.store import open_store
from tolken.web import create_app

ITEM = {"seq": 7, "type": "customer", "id": "cus_1", "op": "upsert"}

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_items = st.fixed_dictionaries(
    {},
    optional={
        "seq": st.integers() | _json,
        "type": st.sampled_from(["customer", "project", "x"]) | _json,
        "id": st.text(max_size=300) | _json,
        "op": st.sampled_from(["upsert", "delete"]) | _json,
    },
)
_bodies = (
    st.binary(max_size=300)
    | _json.map(lambda value: json.dumps(value).encode())
    | _items.map(lambda value: json.dumps(value).encode())
    | st.just(json.dumps(ITEM).encode())
)
# Header values a client could put on the wire: visible latin-1 bytes, no CR/LF/NUL.
_header_values = st.binary(max_size=80).map(
    lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F)
) | st.sampled_from([b"", b"-1", b"1e999", b"10" * 200, b"\xc3\xa6", b"sha256=", b"0.5"])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = make_config(Path(tmp_path_factory.mktemp("fuzz-webhooks")))
    received: list[dict[str, Any]] = []
    with open_store(config.store) as store:
        app = create_app(config, store.for_tenant(config.tenant), on_webhook=received.append)
        yield TestClient(app, raise_server_exceptions=False)


def _assert_handled(response: Any) -> None:
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


@FUZZ
@given(body=_bodies, timestamp=st.integers(min_value=-(10**20), max_value=10**20) | st.none())
def test_signed_deliveries_of_any_body_are_answered_without_a_5xx(
    client: TestClient, body: bytes, timestamp: int | None
) -> None:
    """Any body signed with the secret, at any timestamp, gets a 2xx/4xx answer, no traceback."""
    headers = sign_webhook(WEBHOOK_SECRET, body, timestamp=timestamp)
    _assert_handled(client.post("/webhooks/pms", content=body, headers=headers))


@FUZZ
@given(
    body=_bodies,
    timestamp=_header_values | st.none(),
    signature=_header_values | st.none(),
    content_type=st.sampled_from([None, "application/json", "text/plain", "x/\xe6"]),
)
def test_unsigned_or_garbled_deliveries_are_refused_without_a_5xx(
    client: TestClient,
    body: bytes,
    timestamp: bytes | None,
    signature: bytes | None,
    content_type: str | None,
) -> None:
    """Odd, missing or non-ASCII timestamps and signatures get a 4xx, never a 500 or traceback."""
    headers: dict[bytes, bytes] = {}
    if timestamp is not None:
        headers[b"X-PMS-Timestamp"] = timestamp
    if signature is not None:
        headers[b"X-PMS-Signature"] = signature
    if content_type is not None:
        headers[b"Content-Type"] = content_type.encode("latin-1")
    response = client.post("/webhooks/pms", content=body, headers=headers)
    _assert_handled(response)
    assert response.status_code >= 400
