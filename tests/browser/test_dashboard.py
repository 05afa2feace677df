"""The dashboard in headless Chromium (Debian's /usr/bin/chromium) after a real sync.

`tolken serve`'s web app and watch loop run against both sandbox systems on
loopback; the browser signs in with the token, reads the three flows, opens
the parked record, and retries it once its cause is fixed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from pydantic import SecretStr

from integration.sync_harness import Sandbox, no_waits, running_sandbox
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
