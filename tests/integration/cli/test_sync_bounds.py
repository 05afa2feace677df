"""`tolken sync --once` against a PMS that misbehaves: every listing ends, every stop stops.

The PMS here is a small real HTTP server on loopback (PowerOffice is the
simulator); tolken runs as a child process, as an operator runs it.
"""

from __future__ import annotations

import asyncio
import itertools
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration.sync_harness import Sandbox, start_tolken
from loopback import serve


class MisbehavingPMS:
    """A PMS whose customer listing never ends; ``mode`` says how.

    ``same-items``: the same two customers on every page with a fresh cursor
    (the reported bug). ``fresh-items``: new customers on every page, slowly.
    ``rate-limited``: every request answered 429 with ``Retry-After: 30``.
    ``slow-pages``: like ``fresh-items``, 5 s a page.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self._ids = itertools.count(1)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/changes", self._changes),
                Route("/api/v1/{resource}", self._list),
            ]
        )

    def _customer(self, n: int) -> dict[str, Any]:
        return {
            "id": f"c{n}",
            "kind": "company",
            "name": f"Customer {n}",
            "version": 1,
            "updated_at": f"2026-01-01T00:00:{n % 60:02d}Z",
        }

    async def _changes(self, _request: Request) -> Response:
        self.requests += 1
        if self.mode == "rate-limited":
            return JSONResponse({"errors": []}, status_code=429, headers={"Retry-After": "30"})
        return JSONResponse({"items": [], "last_seq": 0, "has_more": False})

    async def _list(self, request: Request) -> Response:
        self.requests += 1
        if request.path_params["resource"] != "customers":
            return JSONResponse({"items": [], "next_cursor": None})
        if self.mode == "same-items":
            items = [self._customer(1), self._customer(2)]
        elif self.mode == "slow-pages":
            await asyncio.sleep(5)
            items = [self._customer(next(self._ids))]
        else:
            await asyncio.sleep(0.02)
            items = [self._customer(next(self._ids))]
        return JSONResponse({"items": items, "next_cursor": uuid.uuid4().hex})


@pytest.fixture
def misbehaving(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[tuple[Sandbox, Any]]:
    """The sandbox's PowerOffice and a misbehaving PMS (``mode`` from the test's param)."""
    pms = MisbehavingPMS(request.param)
    with serve(pms.app()) as url:
        yield Sandbox(sb.po_url, url, sb.tmp), pms


@contextmanager
def _tolken(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``tolken ARGS`` as a child; killed when the test leaves it running (a failed stop)."""
    with start_tolken(*args) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _wait_for(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("misbehaving", ["same-items"], indirect=True)
def test_a_fresh_cursor_over_the_same_items_ends_the_run_naming_the_request(
    misbehaving: tuple[Sandbox, MisbehavingPMS],
) -> None:
    """A PMS that hands out a new cursor with the same items every page: exit 1, one clear line."""
    sandbox, pms = misbehaving
    config = sandbox.write_config()
    started = time.monotonic()
    with _tolken("sync", "--config", str(config), "--once") as proc:
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert time.monotonic() - started < 30
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: pms: the PMS listing GET /api/v1/customers")
    assert "same records" in lines[0]
    assert pms.requests < 10


@pytest.mark.parametrize("misbehaving", ["fresh-items"], indirect=True)
def test_sigterm_mid_listing_exits_0_within_two_seconds(
    misbehaving: tuple[Sandbox, MisbehavingPMS],
) -> None:
    """SIGTERM while tolken pages through an endless listing: it stops within a second, exit 0."""
    sandbox, pms = misbehaving
    config = sandbox.write_config()
    with _tolken("sync", "--config", str(config), "--once") as proc:
        _wait_for(lambda: pms.requests > 20)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 5.0)
        reported = time.monotonic() - signalled
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    assert ready
    assert proc.returncode == 0, err
    assert reported < 1.0
    assert took < 3.0
    assert "interrupted" in out


@pytest.mark.parametrize("misbehaving", ["rate-limited"], indirect=True)
def test_sigterm_during_a_long_retry_after_exits_within_a_second(
    misbehaving: tuple[Sandbox, MisbehavingPMS],
) -> None:
    """SIGTERM while tolken waits out a 30 s Retry-After: the wait ends within a second, exit 0."""
    sandbox, pms = misbehaving
    config = sandbox.write_config()
    with _tolken("sync", "--config", str(config), "--once") as proc:
        _wait_for(lambda: pms.requests >= 1)
        time.sleep(0.5)  # well inside the 30 s wait
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        # The report is printed as soon as the wait has ended (the interpreter's own
        # shutdown after it takes a while longer on a busy machine).
        ready, _, _ = select.select([proc.stdout], [], [], 5.0)
        reported = time.monotonic() - signalled
        out, err = proc.communicate(timeout=40)
        took = time.monotonic() - signalled
    assert ready
    assert proc.returncode == 0, err
    assert reported < 1.0
    assert took < 3.0
    assert pms.requests == 1
    assert "interrupted" in out


@pytest.mark.parametrize("misbehaving", ["slow-pages"], indirect=True)
def test_a_second_sigterm_is_never_ignored(misbehaving: tuple[Sandbox, MisbehavingPMS]) -> None:
    """A second SIGTERM while the graceful stop waits for a slow page ends tolken at once."""
    sandbox, pms = misbehaving
    config = sandbox.write_config()
    with _tolken("sync", "--config", str(config), "--once") as proc:
        _wait_for(lambda: pms.requests >= 2)  # the feed, then the first (5 s) page
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None  # the first asks to stop after the page in flight
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    assert took < 3.0
    assert proc.returncode != 0  # not the graceful stop: the second signal ended it
