"""The fleet's tenants page in headless Chromium (Debian's /usr/bin/chromium) on PostgreSQL.

Fleet-mode `tolken serve` lists two tenants; the browser signs in with the
token, pauses one with its button (a real form post with the page's CSRF
token), sees it paused, resumes it, and drills into the other's pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from integration.fleet_web_harness import TOKEN, fleet_config, jobs, tenant
from tolken.web.fleet_serve import FleetServing, fleet_serving

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

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
def running(postgres_url: str) -> Iterator[FleetServing]:
    with fleet_serving(fleet_config(postgres_url)) as served:
        served.fleet.registry.add(tenant("alpha"))
        served.fleet.registry.add(tenant("beta"))
        served.fleet.store.for_tenant("beta").create_link("customers", "10001", "cus_beta")
        yield served


def _state(page: Page, tenant_id: str) -> str:
    return page.locator(f'tr.tenant[data-tenant="{tenant_id}"] .state').inner_text()


def test_tenants_page_lists_tenants_and_a_pause_click_pauses_one(
    page: Page, running: FleetServing
) -> None:
    """Both tenants listed; Pause on alpha shows it paused; Resume queues its job again."""
    page.goto(f"{running.url}/?token={TOKEN}")
    assert page.url == f"{running.url}/"
    rows = page.locator("tr.tenant").all()
    assert [r.get_attribute("data-tenant") for r in rows] == ["alpha", "beta"]
    assert _state(page, "alpha") == "idle"

    page.click('tr.tenant[data-tenant="alpha"] button:text("Pause")')
    assert "alpha" in page.inner_text(".notice")
    assert _state(page, "alpha") == "paused"
    assert _state(page, "beta") == "idle"
    assert running.fleet.registry.get("alpha").paused
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "fleet-tenants.png"), full_page=True)

    page.click('tr.tenant[data-tenant="alpha"] button:text("Resume")')
    assert _state(page, "alpha") == "queued"
    assert len(jobs(running.fleet, "alpha")) == 1

    page.click('tr.tenant[data-tenant="beta"] a.mono')
    assert page.url == f"{running.url}/tenants/beta/"
    assert "tenant beta" in page.inner_text("header")
    page.click("nav >> text=Links")
    assert "cus_beta" in page.inner_text("main")
