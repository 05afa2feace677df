"""The dashboard in headless Chromium (Debian's /usr/bin/chromium) after a real sync.

`tolken serve`'s web app and watch loop run against both sandbox systems on
loopback; the browser signs in with the token, reads the three flows, opens
the parked record, and retries it once its cause is fixed. A page served from
another loopback port (same site, another origin) then tries to post the
dashboard's forms with the browser's session cookie and to frame it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from integration.sync_harness import Sandbox, no_waits, running_sandbox
from loopback import serve as serve_app
from tolken.config import ServeSettings
from tolken.web.serve import Serving, serving, watch_loop

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token-5c1e"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(5000)
    yield opened
    context.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Sandbox, Serving]]:
    """Both sandboxes with a little data, synchronised once by a running `serve`."""
    with running_sandbox() as (po_url, pms_url), no_waits():
        sb = Sandbox(po_url, pms_url, tmp_path)
        dept = sb.po_create("Departments", {"Code": "10", "Name": "Prosjekt Oslo"})
        cust = sb.po_create(
            "Customers",
            {
                "Name": "Nordlys Bygg AS",
                "OrganizationNumber": "923456780",
                "EmailAddress": "post@nordlys.no",
            },
        )
        sb.po_create(
            "Customers",
            {
                "Name": "Fjellvann AS",
                "OrganizationNumber": "934567891",
                "EmailAddress": "fjellvann",
            },
        )
        sb.po_create(
            "Projects",
            {
                "Code": "P-100",
                "Name": "Nytt kontor",
                "CustomerId": int(cust),
                "DepartmentId": int(dept),
            },
        )
        serve = ServeSettings(port=0, token=SecretStr(TOKEN))
        config = sb.config(interval_seconds=30).model_copy(update={"serve": serve})
        with serving(config) as srv:
            thread = threading.Thread(target=watch_loop, args=(srv.engine, srv.queue), daemon=True)
            thread.start()
            _wait(lambda: _finished_runs(srv) >= 1, 10)
            try:
                yield sb, srv
            finally:
                srv.engine.request_stop()
                srv.queue.wake()
                thread.join(timeout=10)


def _finished_runs(srv: Serving) -> int:
    return sum(r.finished_at is not None for r in srv.engine.store.last_runs())


def _wait(check: object, timeout: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _count(page: Page, flow: str, kind: str) -> str:
    return page.locator(f'[data-flow="{flow}"] .{kind}-count').inner_text()


def test_dashboard_shows_flows_and_a_fixed_failure_goes_away_after_retry(
    page: Page, served: tuple[Sandbox, Serving]
) -> None:
    """Sign in with ?token=, see three flows with counts, retry the parked customer once fixed."""
    sb, srv = served
    refused = page.goto(f"{srv.url}/")
    assert refused is not None
    assert refused.status == 401
    assert "?token=" in page.inner_text("body")

    page.goto(f"{srv.url}/?token={TOKEN}")
    assert page.url == f"{srv.url}/"  # the token left the address bar for a cookie
    assert [f.get_attribute("data-flow") for f in page.locator("section.flow").all()] == [
        "departments",
        "customers",
        "projects",
    ]
    assert _count(page, "departments", "links") == "1"
    assert _count(page, "customers", "links") == "1"
    assert _count(page, "projects", "links") == "1"
    assert _count(page, "customers", "failures") == "1"

    page.click('[data-flow="customers"] .failures-count')
    page.click("tr.failure a")
    assert "must be an e-mail address" in page.inner_text("pre.msg")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)

    [customer] = [c for c in sb.po_list("Customers") if c["Name"] == "Fjellvann AS"]
    sb.po_update("Customers", str(customer["Id"]), {"EmailAddress": "post@fjellvann.no"})
    page.click("text=Retry now")
    assert "Retry scheduled" in page.inner_text(".notice")
    deadline = time.monotonic() + 5
    while page.locator("tr.failure").count():
        assert time.monotonic() < deadline, "the failure is still listed after the retry"
        time.sleep(0.2)
        page.reload()
    assert "No parked records" in page.inner_text("main")

    page.goto(f"{srv.url}/")
    assert _count(page, "customers", "links") == "2"
    assert _count(page, "customers", "failures") == "0"
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


@pytest.fixture
def other_origin() -> Iterator[tuple[str, dict[str, str]]]:
    """Another loopback port serving whatever HTML the test puts in the dict, by path name."""
    pages: dict[str, str] = {}

    def show(request: Request) -> HTMLResponse:
        name = request.path_params["name"]
        return HTMLResponse(pages.get(name, "not here"), 200 if name in pages else 404)

    app = Starlette(routes=[Route("/{name}", show)])
    with serve_app(app) as url:
        yield url, pages


def _autosubmit(action: str, fields: dict[str, str]) -> str:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    return (
        f'<form method="post" action="{action}">{inputs}</form>'
        "<script>document.forms[0].submit()</script>"
    )


def test_a_page_on_another_port_can_neither_post_the_forms_nor_frame_the_dashboard(
    page: Page, served: tuple[Sandbox, Serving], other_origin: tuple[str, dict[str, str]]
) -> None:
    """Retry and settle forms posted from another origin with the session cookie: 403, no effect."""
    _, srv = served
    store = srv.engine.store
    evil, pages = other_origin
    [failure] = store.list_failures()
    [link] = store.list_links("customers")
    conflict = store.record_conflict(
        "customers",
        link.id,
        "phone",
        poweroffice_value="+47 22 00 00 00",
        pms_value="+47 99 99 99 99",
        shadow_value=None,
        policy="manual",
        winner="parked",
    )
    page.goto(f"{srv.url}/?token={TOKEN}")  # signed in: the browser holds the session cookie
    page.goto(f"{srv.url}/conflicts")  # and the CSRF cookie
    pages["retry"] = _autosubmit(f"{srv.url}/failures/{failure.id}/retry", {})
    pages["settle"] = _autosubmit(f"{srv.url}/conflicts/{conflict.id}/resolve", {"winner": "pms"})
    pages["token"] = _autosubmit(f"{srv.url}/failures/retry?token={TOKEN}", {})
    pages["frame"] = f'<iframe src="{srv.url}/failures" width="800" height="600"></iframe>'

    for name in ("retry", "settle", "token"):
        with page.expect_response(lambda r: r.url.startswith(srv.url)) as posted:
            page.goto(f"{evil}/{name}")
        assert posted.value.request.method == "POST"
        assert posted.value.status == 403, name
        assert "Refused" in page.inner_text("body")

    page.goto(f"{evil}/frame")
    page.wait_for_load_state("load")
    [framed] = [f for f in page.frames if f is not page.main_frame]
    # Chromium shows its own error page in place of a dashboard that refuses to be framed.
    assert not framed.url.startswith(srv.url), framed.url

    time.sleep(0.5)  # a retry that got through would have woken the loop by now
    [after] = store.list_failures()
    assert after.next_attempt_at == failure.next_attempt_at
    assert after.attempts == failure.attempts
    assert [c.id for c in store.list_conflicts(parked_only=True)] == [conflict.id]
