"""The fleet tier's fixtures: sandbox servers (the PowerOffice one at 10 req/s) and a fleet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from integration.fleet.fleet_harness import FleetSandbox
from loopback import serve
from tolken.sandbox.pms import create_app as create_pms
from tolken.sandbox.poweroffice import create_app as create_poweroffice


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """Both sandbox servers over loopback; PowerOffice's budget is 10 req/s per subscription key."""
    with ExitStack() as stack:
        po_url = stack.enter_context(serve(create_poweroffice(rate_limit_per_second=10)))
        pms_url = stack.enter_context(serve(create_pms()))
        yield po_url, pms_url


@pytest.fixture
def sandbox(servers: tuple[str, str], postgres_url: str, tmp_path: Path) -> Iterator[FleetSandbox]:
    """Empty sandbox systems, a fresh PostgreSQL schema, a fleet config; workers stopped after."""
    found = FleetSandbox(servers[0], servers[1], postgres_url, tmp_path)
    found.reset()
    found.write_config()
    try:
        yield found
    finally:
        for worker in found.workers:
            if worker.process.poll() is None:
                worker.kill()
