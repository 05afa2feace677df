"""The dashboard token: Bearer header, ?token= then a cookie; 401 (with instructions) otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from integration.web_harness import TOKEN, make_config
from tolken.store import open_store
from tolken.web import create_app

PROTECTED = (
    "/",
    "/api/status",
    "/failures",
    "/api/failures",
    "/conflicts",
    "/api/conflicts",
    "/links",
    "/api/links",
    "/metrics",
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = make_config(tmp_path)
    with open_store(config.store) as store:
        yield TestClient(create_app(config, store.for_tenant(config.tenant)))


@pytest.mark.parametrize("path", PROTECTED)
def test_every_page_but_healthz_is_refused_without_the_token(client: TestClient, path: str) -> None:
    """No token, a wrong Bearer token or a wrong ?token= all get 401."""
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(f"{path}?token=nope").status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_refusal_page_says_how_to_authenticate(client: TestClient) -> None:
    """A browser gets an HTML 401 naming ?token= and the Bearer header; an API gets JSON."""
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 401
    assert "text/html" in page.headers["content-type"]
    assert "?token=" in page.text
    assert "Authorization: Bearer" in page.text
    assert page.headers["www-authenticate"].startswith("Bearer")
    api = client.get("/api/status")
    assert api.json()["error"] == "unauthorized"
    assert "Bearer" in api.json()["how"]


def test_a_token_visit_sets_a_cookie_and_drops_the_token_from_the_url(client: TestClient) -> None:
    """/failures?token=T redirects to /failures with a cookie that opens every page after."""
    answer = client.get(f"/failures?flow=customers&token={TOKEN}", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/failures?flow=customers"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert TOKEN not in cookie  # the cookie holds a keyed hash, not the token
    assert client.get("/conflicts").status_code == 200  # the client kept the cookie
    client.cookies.clear()
    assert client.get("/conflicts").status_code == 401


@pytest.mark.parametrize("path", ["/failures/retry", "/api/failures/retry"])
def test_a_post_with_the_token_in_the_url_is_refused(tmp_path: Path, path: str) -> None:
    """?token= opens GET pages only: a form posted to /failures/retry?token=T gets 403, no retry."""
    config = make_config(tmp_path)
    woken: list[str] = []
    with open_store(config.store) as db:
        store = db.for_tenant(config.tenant)
        client = TestClient(create_app(config, store, wake=lambda: woken.append("wake")))
        store.record_failure("customers", "poweroffice", "1", "ValidationFailed", "bad", status=422)
        answer = client.post(f"{path}?token={TOKEN}", follow_redirects=False)
        assert answer.status_code == 403
        assert "?token= is accepted on GET only" in answer.text
        assert "set-cookie" not in answer.headers
        [failure] = store.list_failures()
        assert failure.attempts == 1
        assert failure.next_attempt_at > store.now()  # not made due
    assert woken == []


def test_an_authorization_header_is_judged_alone(client: TestClient) -> None:
    """A wrong Bearer token is refused even beside a valid session cookie."""
    client.get(f"/?token={TOKEN}")  # signs in: the client keeps the cookie
    assert client.get("/api/status").status_code == 200
    assert client.get("/api/status", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_forged_cookie_is_refused(client: TestClient) -> None:
    """A made-up session cookie does not open the dashboard."""
    client.cookies.set("tolken_session", "0" * 64)
    assert client.get("/").status_code == 401


def test_without_a_configured_token_the_dashboard_stays_locked(tmp_path: Path) -> None:
    """With no serve.token nothing is let in (an empty token must not match)."""
    config = make_config(tmp_path, token=None)
    with open_store(config.store) as store:
        client = TestClient(create_app(config, store.for_tenant(config.tenant)))
        answer = client.get("/api/status", headers={"Authorization": "Bearer "})
        assert answer.status_code == 401
        assert "serve.token" in answer.json()["message"]
        assert client.get("/healthz").status_code == 200
