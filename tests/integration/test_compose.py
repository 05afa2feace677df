"""The composition root: one config becomes a running engine over real loopback HTTP."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from integration.sync_harness import Sandbox
from tolken.compose import open_engine
from tolken.connectors import _http
from tolken.errors import ConfigError
from tolken.store import open_store


class Tally(httpx.BaseTransport):
    """Sends through a real HTTP transport, counting requests and noting when it is closed."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests = 0
        self.closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.closed = True
        self.inner.close()


def test_a_cycle_reports_the_requests_it_sent_to_each_system(sb: Sandbox) -> None:
    """The cycle's report counts every request each system got, token requests included."""
    sb.po_create("Departments", {"Code": "10", "Name": "Salg"})
    sb.po_create("Customers", {"Name": "Fjellvind AS"})
    po, pms = Tally(), Tally()
    with open_engine(sb.config(), transports={"poweroffice": po, "pms": pms}) as engine:
        first = engine.run_cycle()
        second = engine.run_cycle()
    assert first.total("created") == 2
    assert po.requests > 1  # a token and the listings at least
    assert pms.requests > 1
    assert first.requests["poweroffice"] + second.requests["poweroffice"] == po.requests
    assert first.requests["pms"] + second.requests["pms"] == pms.requests
    assert 0 < second.requests["pms"] < first.requests["pms"]  # only the new cycle's requests


class Cookies(Tally):
    """A real transport whose answers all set a cookie; notes the Cookie headers sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += request.headers.get_list("cookie")
        response = super().handle_request(request)
        response.headers["set-cookie"] = "session=s3cr3t; Path=/"
        return response


def test_the_connectors_keep_no_cookies(sb: Sandbox) -> None:
    """Both systems authenticate by token: a cookie an answer sets is never sent back."""
    sb.po_create("Customers", {"Name": "Fjellvind AS"})
    sb.po_create("Customers", {"Name": "Havbris AS"})
    po, pms = Cookies(), Cookies()
    with open_engine(sb.config(), transports={"poweroffice": po, "pms": pms}) as engine:
        assert engine.run_cycle().total("created") == 2
        engine.run_cycle()
    assert po.requests > 2
    assert pms.requests > 2
    assert (po.sent, pms.sent) == ([], [])


def test_leaving_the_block_closes_the_connections_but_not_a_shared_store(sb: Sandbox) -> None:
    """The HTTP connections opened for the engine are closed after it; a store handed in is not."""
    config = sb.config()
    po, pms = Tally(), Tally()
    with open_store("sqlite://") as store:  # in memory: closing it would lose every row
        with open_engine(config, store=store, transports={"poweroffice": po, "pms": pms}) as engine:
            run_id = engine.run_cycle().run_id
            assert (po.closed, pms.closed) == (False, False)
        assert (po.closed, pms.closed) == (True, True)
        assert run_id is not None
        run = store.for_tenant(config.tenant).get_run(run_id)  # the dashboard reads the same store
        assert run is not None
        assert run.status == "ok"


def test_an_unknown_connector_is_a_config_error_naming_the_installed_ones(sb: Sandbox) -> None:
    """A `pms.connector` nobody installed stops with a config error and leaves nothing open."""
    po, pms = Tally(), Tally()
    config = sb.config(pms={"connector": "acme"})
    with (
        pytest.raises(ConfigError, match=r"unknown connector 'acme'; installed: pms, poweroffice"),
        open_engine(config, transports={"poweroffice": po, "pms": pms}),
    ):
        pass
    assert po.closed
    assert pms.closed


def test_a_stop_handed_to_the_engine_ends_its_poweroffice_requests(sb: Sandbox) -> None:
    """With the stop set, a cycle ends interrupted and PowerOffice gets no request at all."""
    po, pms = Tally(), Tally()
    stop = threading.Event()
    stop.set()
    with open_engine(sb.config(), transports={"poweroffice": po, "pms": pms}, stop=stop) as engine:
        report = engine.run_cycle()
    assert report.interrupted
    assert po.requests == 0


def test_connectors_of_one_subscription_key_share_the_process_budget(sb: Sandbox) -> None:
    """Two engines of one config in one process pause together: a 429 one of them saw holds
    back the other's PowerOffice requests too."""
    config = sb.config()
    with open_engine(config) as first, open_engine(config) as second:
        first.poweroffice._limiter.pause(30.0)  # type: ignore[attr-defined]  # noqa: SLF001 (the budget is private)
        assert second.poweroffice._limiter.budget.paused_for() > 29  # type: ignore[attr-defined]  # noqa: SLF001


def test_request_stop_ends_a_connector_retry_wait_within_a_second(sb: Sandbox) -> None:
    """engine.request_stop() (what serve's shutdown calls) ends a 30 s Retry-After wait at once."""
    refused = httpx.MockTransport(
        lambda _request: httpx.Response(429, json={}, headers={"Retry-After": "30"})
    )
    _http.set_testing(False)  # real waits: the stop has to end one
    try:
        with open_engine(sb.config(), transports={"pms": refused}) as engine:
            threading.Timer(0.5, engine.request_stop).start()
            started = time.monotonic()
            report = engine.run_cycle()
            took = time.monotonic() - started
    finally:
        _http.set_testing(True)
    assert report.interrupted
    assert took < 1.5
    with open_store(sb.config().store) as store:
        assert store.for_tenant("default").last_runs()[0].status == "stopped"
