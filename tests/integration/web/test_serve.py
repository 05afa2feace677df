"""`tolken serve` over loopback: the watch loop and the dashboard in one process, with webhooks."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from integration.sync_harness import Sandbox, start_tolken
from tolken.cli import app as cli
from tolken.config import ServeSettings, TolkenConfig
from tolken.engine import CycleReport
from tolken.errors import ConfigError
from tolken.web.serve import Serving, serving, watch_loop

TOKEN = "serve-test-dashboard-token"
SECRET = "serve-test-webhook-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _config(sb: Sandbox, interval: float = 30.0) -> TolkenConfig:
    # A long interval: anything that happens quickly was woken by a webhook or a button.
    base = sb.config(interval_seconds=interval)
    serve = ServeSettings(
        host="127.0.0.1", port=0, token=SecretStr(TOKEN), webhook_secret=SecretStr(SECRET)
    )
    return base.model_copy(update={"serve": serve})


class Cycles:
    """Counts finished cycles so a test can wait for the next one."""

    def __init__(self) -> None:
        self.reports: list[CycleReport] = []
        self._cond = threading.Condition()

    def __call__(self, report: CycleReport) -> None:
        with self._cond:
            self.reports.append(report)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.reports) >= count, timeout), (
                f"only {len(self.reports)} cycle(s) ran"
            )


@contextmanager
def running(config: TolkenConfig) -> Iterator[tuple[Serving, Cycles]]:
    cycles = Cycles()
    with serving(config) as srv:
        errors: list[BaseException] = []

        def loop() -> None:
            try:
                watch_loop(srv.engine, srv.queue, on_cycle=cycles)
            except BaseException as exc:  # noqa: BLE001 - surfaced in the test thread below
                errors.append(exc)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield srv, cycles
        finally:
            srv.engine.request_stop()
            srv.queue.wake()
            thread.join(timeout=10)
        assert not errors, errors


def _poll(check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_pms_edit_reaches_poweroffice_by_webhook_in_under_two_seconds(sb: Sandbox) -> None:
    """With a 30 s interval, a PMS edit still arrives in PowerOffice within 2 s (webhook)."""
    cust = sb.po_create("Customers", {"Name": "Fjord AS", "OrganizationNumber": "912345678"})
    with running(_config(sb)) as (srv, cycles):
        cycles.wait_for(1)
        [pms] = sb.pms_list("customers", kind="company")
        sb.pms_update("customers", pms["id"], {"name": "Fjord Holding AS"})
        seconds = _poll(lambda: sb.po_get("Customers", cust)["Name"] == "Fjord Holding AS", 5.0)
        metrics = httpx.get(f"{srv.url}/metrics", headers=AUTH).text
    print(f"webhook path: PMS edit -> PowerOffice in {seconds:.3f} s")
    assert seconds < 2.0
    assert 'tolken_webhooks_total{outcome="accepted"}' in metrics
    assert 'tolken_requests_total{status="200",system="pms"}' in metrics


def test_the_retry_button_runs_the_parked_record_at_once(sb: Sandbox) -> None:
    """A customer the PMS refused is fixed in PowerOffice; the retry button syncs it at once."""
    bad = sb.po_create("Customers", {"Name": "Feil AS", "EmailAddress": "not-an-email"})
    with running(_config(sb)) as (srv, cycles):
        cycles.wait_for(1)
        [failure] = httpx.get(f"{srv.url}/api/failures", headers=AUTH).json()
        assert failure["record_id"] == bad
        sb.po_update("Customers", bad, {"EmailAddress": "post@feil.no"})
        answer = httpx.post(f"{srv.url}/api/failures/{failure['id']}/retry", headers=AUTH)
        assert answer.status_code == 202
        _poll(lambda: httpx.get(f"{srv.url}/api/failures", headers=AUTH).json() == [], 3.0)
    [created] = sb.pms_list("customers", kind="company")
    assert created["email"] == "post@feil.no"


def test_serve_refuses_to_start_without_a_token(sb: Sandbox) -> None:
    """A dashboard without serve.token would be open to anyone: serve refuses to start."""
    config = sb.config().model_copy(update={"serve": ServeSettings(port=0)})
    with pytest.raises(ConfigError, match=r"serve\.token"), serving(config):
        pass


SHORT_SECRETS = {
    "serve.token": "serve:\n  token: ab1\n",
    "serve.webhook_secret": f"serve:\n  token: {TOKEN}\n  webhook_secret: 15-characters!!\n",
}


@pytest.mark.parametrize("key", SHORT_SECRETS)
def test_a_secret_shorter_than_16_characters_is_refused_at_load(tmp_path: Path, key: str) -> None:
    """A guessable serve.token or webhook secret is a config error naming the key (exit 2)."""
    path = tmp_path / "tolken.yaml"
    path.write_text(
        "poweroffice:\n  application_key: application-key\n  client_key: client-key-1\n"
        "  subscription_key: subscription-key-1\n"
        "pms:\n  base_url: http://127.0.0.1:9/api/v1\n  api_key: pms-api-key-1\n"
        + SHORT_SECRETS[key],
        encoding="utf-8",
    )
    # Refused when the file is loaded, by every command (sync fails fast if it is not).
    result = CliRunner().invoke(cli, ["sync", "--once", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{key}: must be at least 16 characters" in result.output


@pytest.mark.slow
def test_the_serve_command_serves_syncs_and_stops_on_sigterm(sb: Sandbox) -> None:
    """`tolken serve` prints the dashboard URL, syncs, answers /healthz, exits 0 on SIGTERM."""
    sb.po_create("Departments", {"Code": "D1", "Name": "Salg"})
    extra = f"serve:\n  port: 0\n  token: {TOKEN}\n  webhook_secret: {SECRET}\n"
    config = sb.write_config(extra=extra)
    with start_tolken("serve", "--config", str(config)) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        url = line.split()[1].rstrip("/")
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
        assert httpx.get(f"{url}/api/status").status_code == 401
        _poll(lambda: len(sb.pms_list("customers", kind="department")) == 1, 10.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out
    for secret in (TOKEN, SECRET, "sandbox-pms-key", "sandbox-client-key"):
        assert secret not in err
        assert secret not in out
    assert '"event": "cycle finished"' in err


@pytest.mark.slow
def test_sync_watch_with_a_serve_section_reacts_to_pms_webhooks(sb: Sandbox) -> None:
    """`sync --watch` with serve configured registers the webhook: a PMS edit arrives in < 2 s."""
    cust = sb.po_create("Customers", {"Name": "Vik AS", "OrganizationNumber": "923456783"})
    extra = f"serve:\n  port: 0\n  token: {TOKEN}\n  webhook_secret: {SECRET}\n"
    config = sb.write_config(extra=extra, interval=60)
    with start_tolken("sync", "--watch", "--json", "--config", str(config)) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("dashboard: http://127.0.0.1:")
        _poll(lambda: len(sb.pms_list("customers", kind="company")) == 1, 10.0)
        [pms] = sb.pms_list("customers", kind="company")
        sb.pms_update("customers", pms["id"], {"name": "Vik Holding AS"})
        seconds = _poll(lambda: sb.po_get("Customers", cust)["Name"] == "Vik Holding AS", 5.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert seconds < 2.0
    assert '"flows"' in out  # one JSON line per cycle
