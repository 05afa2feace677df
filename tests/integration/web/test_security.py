"""Browser defences: security headers on every response; CSRF (origin + token) on every POST."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from integration.web_harness import AUTH, TOKEN, Clock, make_config, seed
from tolken.store import TenantStore, open_store
from tolken.web import create_app

OWN = "http://testserver"  # TestClient's origin
SIBLING = "http://testserver:8471"  # same site, another port: another origin


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TenantStore]:
    with open_store(make_config(tmp_path).store, clock=Clock()) as opened:
        yield opened.for_tenant("default")


@pytest.fixture
def ids(store: TenantStore) -> dict[str, int]:
    return seed(store, Clock())


@pytest.fixture
def woken() -> list[str]:
    return []


@pytest.fixture
def client(tmp_path: Path, store: TenantStore, woken: list[str]) -> TestClient:
    return TestClient(create_app(make_config(tmp_path), store, wake=lambda: woken.append("wake")))


def _signed_in(client: TestClient) -> None:
    assert client.get(f"/?token={TOKEN}").status_code == 200  # keeps the session cookie


def _form_token(client: TestClient, page: str) -> str:
    html = client.get(page).text
    found = re.search(r'name="csrftoken" value="([^"]+)"', html)
    assert found, f"no CSRF field in {page}"
    return found.group(1)


def _parked(store: TenantStore) -> int:
    return len(store.list_conflicts(parked_only=True))


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/", AUTH),
        ("GET", "/conflicts", AUTH),
        ("GET", "/api/status", AUTH),
        ("GET", "/", {}),  # the 401 sign-in page
        ("GET", "/healthz", {}),
        ("GET", "/metrics", AUTH),
        ("GET", "/nope", AUTH),
        ("POST", "/webhooks/pms", {}),
        ("POST", "/failures/retry", {"Origin": SIBLING}),
    ],
)
def test_every_response_carries_the_security_headers(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    """CSP with frame-ancestors 'none', X-Frame-Options DENY, nosniff and no-referrer, always."""
    answer = client.request(method, path, headers=headers)
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_pages_need_no_inline_style_and_the_stylesheet_is_served(
    client: TestClient, ids: dict[str, int]
) -> None:
    """Under default-src 'self' the pages style themselves from /static/tolken.css only."""
    for page in ("/", "/conflicts", "/failures", f"/failures/{ids['failure']}", "/links"):
        html = client.get(page, headers=AUTH).text
        assert "<style" not in html, page
        assert "style=" not in html, page
        assert 'href="/static/tolken.css"' in html
    css = client.get("/static/tolken.css")  # public, like the sign-in page that uses it
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # Chromium under no-referrer
        {"Origin": OWN},  # a browser without Fetch Metadata
    ],
    ids=["origin-and-fetch-site", "null-origin-and-fetch-site", "origin-only"],
)
def test_a_form_from_the_dashboard_settles_a_conflict(
    client: TestClient,
    store: TenantStore,
    ids: dict[str, int],
    woken: list[str],
    headers: dict[str, str],
) -> None:
    """A signed-in browser posting the page's own form (same origin, its token) is let through."""
    _signed_in(client)
    token = _form_token(client, "/conflicts")
    answer = client.post(
        f"/conflicts/{ids['parked']}/resolve",
        data={"winner": "pms", "csrftoken": token},
        headers=headers,
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert _parked(store) == 0
    assert woken == ["wake"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": SIBLING, "Sec-Fetch-Site": "same-site"},
        {"Origin": SIBLING},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ],
    ids=["sibling-port", "origin-only", "fetch-site-only", "opaque-origin"],
)
def test_a_form_posted_from_another_origin_is_refused(
    client: TestClient,
    store: TenantStore,
    ids: dict[str, int],
    woken: list[str],
    headers: dict[str, str],
) -> None:
    """Even with the session cookie and a valid token, a post from another origin gets 403."""
    _signed_in(client)
    token = _form_token(client, "/conflicts")
    answer = client.post(
        f"/conflicts/{ids['parked']}/resolve",
        data={"winner": "pms", "csrftoken": token},
        headers=headers,
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "origin" in answer.text
    assert _parked(store) == 1
    assert woken == []


@pytest.mark.parametrize("token", [None, "forged", "stale"])
def test_a_form_without_the_pages_token_is_refused(
    client: TestClient, store: TenantStore, ids: dict[str, int], woken: list[str], token: str | None
) -> None:
    """Same origin and signed in, but no CSRF token or a wrong one: 403, nothing settled."""
    _signed_in(client)
    real = _form_token(client, "/conflicts")
    data = {"winner": "pms"}
    if token == "forged":
        data["csrftoken"] = "x" * len(real)
    elif token == "stale":
        data["csrftoken"] = real
        client.cookies.set("tolken_csrf", "made-up")  # another session's cookie
    answer = client.post(
        f"/conflicts/{ids['parked']}/resolve",
        data=data,
        headers={"Origin": OWN, "Sec-Fetch-Site": "same-origin", "Accept": "text/html"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "CSRF token" in answer.text
    assert _parked(store) == 1
    assert woken == []


def test_an_api_client_with_a_bearer_token_needs_no_csrf_token(
    client: TestClient, store: TenantStore, ids: dict[str, int]
) -> None:
    """Authorization: Bearer is no CSRF target: the JSON API works without a token or an Origin."""
    answer = client.post(f"/api/conflicts/{ids['parked']}/resolve?winner=pms", headers=AUTH)
    assert answer.status_code == 200
    assert _parked(store) == 0
    # ...but a browser sending it from another origin is still refused.
    foreign = client.post("/api/failures/retry", headers={**AUTH, "Origin": SIBLING})
    assert foreign.status_code == 403
    assert foreign.json()["error"] == "forbidden"


@pytest.mark.usefixtures("ids")
def test_a_cookie_api_call_without_the_csrf_header_is_refused(client: TestClient) -> None:
    """A script riding on the session cookie must send X-CSRFToken (403 JSON otherwise)."""
    _signed_in(client)
    refused = client.post("/api/failures/retry", headers={"Origin": OWN})
    assert refused.status_code == 403
    assert "X-CSRFToken" in refused.json()["message"]
    token = _form_token(client, "/failures")
    allowed = client.post("/api/failures/retry", headers={"Origin": OWN, "X-CSRFToken": token})
    assert allowed.status_code == 202


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"winner=pms&x=\xff\xfe"),  # not UTF-8
        ("multipart/form-data", b"--x\r\n"),  # no boundary
    ],
    ids=["not-utf8", "multipart-without-boundary"],
)
def test_an_unreadable_form_is_a_400_not_a_crash(
    tmp_path: Path, store: TenantStore, ids: dict[str, int], content_type: str, body: bytes
) -> None:
    """A signed-in post whose form cannot be parsed gets 400 with a message, never a 500."""
    client = TestClient(create_app(make_config(tmp_path), store), raise_server_exceptions=False)
    _signed_in(client)
    answer = client.post(
        f"/conflicts/{ids['parked']}/resolve",
        content=body,
        headers={"Content-Type": content_type, "Origin": OWN},
    )
    assert answer.status_code == 400
    assert "could not be read" in answer.text
    assert _parked(store) == 1
