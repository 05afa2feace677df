"""Fixtures several integration modules share: the two sandbox servers, in three shapes.

Module-scoped fixtures here still start once per test module, as they did
when each module defined its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from starlette.testclient import TestClient

from integration.sync_harness import Sandbox, no_waits, running_sandbox
from loopback import serve
from tolken.sandbox import pms, poweroffice
from tolken.sandbox.credentials import (
    APPLICATION_KEY,
    CLIENT_KEY,
    PMS_API_KEY,
    SUBSCRIPTION_KEY,
)


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    """Both sandbox servers over loopback: ``(poweroffice_url, pms_url)``."""
    with running_sandbox() as found:
        yield found


@pytest.fixture
def sb(urls: tuple[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The loopback sandbox, emptied, with retry waits off.

    Parametrised indirectly (``PMS_CONNECTORS``), tolken reaches the PMS through
    that connector; otherwise through the built-in one.
    """
    sandbox = Sandbox(urls[0], urls[1], tmp_path, getattr(request, "param", "pms"))
    sandbox.reset()
    with no_waits():
        yield sandbox


@pytest.fixture
def po() -> Iterator[TestClient]:
    """An authorised in-process client of a fresh simulator (no rate limit)."""
    with TestClient(poweroffice.create_app(rate_limit_per_second=None)) as client:
        token = client.post(
            "/OAuth/Token",
            auth=(APPLICATION_KEY, CLIENT_KEY),
            headers={"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY},
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        client.headers.update(
            {"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}
        )
        yield client


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The reference PMS over loopback."""
    with serve(pms.create_app()) as url:
        yield url


@pytest.fixture
def api(base_url: str) -> Iterator[httpx.Client]:
    """A client of the reset reference PMS's API, with the API key."""
    httpx.post(f"{base_url}/_sandbox/reset").raise_for_status()
    auth = {"Authorization": f"Bearer {PMS_API_KEY}"}
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=auth, timeout=10) as client:
        yield client


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """The CLI routes logs to its captured stderr; give other tests the root logger back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
