"""`tolken serve` and `tolken worker` as processes on a fleet config, against both sandboxes.

Onboarding end to end through the running serve (initiate, consent in the
sandbox's PowerOffice, PowerOffice's redirect to `/onboarding/callback`), the
new tenant synchronised by a worker, and a PMS webhook to serve reaching the
tenant's PowerOffice through the worker; SIGTERM stops serve with exit 0.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.fleet.fleet_harness import FleetSandbox, wait_until
from integration.fleet_web_harness import AUTH, TOKEN
from loopback import serve
from tolken.connectors.pms import sign_webhook
from tolken.sandbox import credentials
from tolken.sandbox.pms import create_app as create_pms
from tolken.sandbox.poweroffice import create_app as create_poweroffice

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PMS_KEY = f"{credentials.PMS_API_KEY}-nordlys"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        po_url = stack.enter_context(serve(create_poweroffice(rate_limit_per_second=10)))
        pms_url = stack.enter_context(serve(create_pms()))
        yield po_url, pms_url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def fleet(
    servers: tuple[str, str], postgres_url: str, tmp_path: Path
) -> Iterator[tuple[FleetSandbox, str, subprocess.Popen[bytes]]]:
    """A fleet config with a serve: section, `tolken serve` running on it, and its URL."""
    sandbox = FleetSandbox(servers[0], servers[1], postgres_url, tmp_path)
    sandbox.reset()
    path = sandbox.write_config(interval=60)
    port = _free_port()
    path.write_text(
        path.read_text() + f"serve:\n  port: {port}\n  token: {TOKEN}\n", encoding="utf-8"
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("tolken")), "serve", "--config", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**sandbox.environ(), "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=30, what="tolken serve answers /healthz")
        yield sandbox, url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        for worker in sandbox.workers:
            if worker.process.poll() is None:
                worker.kill()
        log.close()


def _po(sandbox: FleetSandbox, client_key: str) -> httpx.Client:
    """A client of the simulator's API for one PowerOffice client."""
    token = httpx.post(
        f"{sandbox.po_url}/OAuth/Token",
        auth=(credentials.APPLICATION_KEY, client_key),
        headers={"Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY},
        data={"grant_type": "client_credentials"},
    ).json()["access_token"]
    headers = {
        "Authorization": f"Bearer {token}",
        "Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY,
    }
    return httpx.Client(base_url=f"{sandbox.po_url}/v2", headers=headers, timeout=30)


def _pms_customers(sandbox: FleetSandbox) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{sandbox.pms_url}/api/v1/customers",
        params={"limit": "1000"},
        headers={"Authorization": f"Bearer {PMS_KEY}"},
        timeout=30,
    )
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_onboarded_tenant_syncs_and_its_webhooks_reach_poweroffice(
    fleet: tuple[FleetSandbox, str, subprocess.Popen[bytes]],
) -> None:
    """Onboard through serve, a worker syncs the new tenant, a PMS edit's webhook gets across."""
    sandbox, url, process = fleet
    started = httpx.post(f"{url}/api/onboarding/start", json={"pms_api_key": PMS_KEY}, headers=AUTH)
    assert started.status_code == 201, started.text
    consent = httpx.post(
        f"{sandbox.po_url}/_sandbox/onboarding/consent",
        json={
            "temporary_url": started.json()["consent_url"],
            "clients": [{"name": "Nordlys Bygg AS", "organization_number": "923456780"}],
        },
    ).json()
    callback = httpx.get(consent["redirect"], timeout=30)
    assert callback.status_code == 200, callback.text
    [row] = httpx.get(f"{url}/api/tenants", headers=AUTH).json()["tenants"]
    assert (row["id"], row["state"]) in {("nordlys-bygg-as", "idle"), ("nordlys-bygg-as", "queued")}

    with sandbox.fleet() as opened:
        settings = opened.registry.get("nordlys-bygg-as").settings
    client_key = settings.poweroffice_client_key.get_secret_value()
    assert settings.webhook_secret is not None
    with _po(sandbox, client_key) as po:
        created = po.post(
            "/Customers", json={"Name": "Fjord Eiendom AS", "EmailAddress": "post@fjord.no"}
        )
        assert created.status_code in (200, 201), created.text
        po_id = str(created.json()["Id"])

        sandbox.start_worker()
        wait_until(lambda: len(_pms_customers(sandbox)) == 1, timeout=30, what="the first sync")
        [customer] = _pms_customers(sandbox)
        assert customer["email"] == "post@fjord.no"

        # A PMS edit, announced to serve by a webhook signed with the tenant's own secret.
        changed = httpx.patch(
            f"{sandbox.pms_url}/api/v1/customers/{customer['id']}",
            json={"email": "faktura@fjord.no"},
            headers={"Authorization": f"Bearer {PMS_KEY}"},
        )
        assert changed.status_code == 200, changed.text
        body = json.dumps({"seq": 99, "type": "customer", "id": customer["id"], "op": "upsert"})
        headers = sign_webhook(settings.webhook_secret.get_secret_value(), body.encode())
        delivered = httpx.post(
            f"{url}/webhooks/pms/nordlys-bygg-as", content=body.encode(), headers=headers
        )
        assert (delivered.status_code, delivered.json()["queued"]) == (202, True)

        def across() -> bool:
            time.sleep(0.5)  # the test's reads share the subscription key's 10 req/s
            return po.get(f"/Customers/{po_id}").json().get("EmailAddress") == "faktura@fjord.no"

        wait_until(across, timeout=15, what="the PMS edit reaches PowerOffice")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert sandbox.stop_workers() == [0]
    logged = (sandbox.tmp / "serve.log").read_text() + sandbox.logs()
    assert "fleet dashboard listening" in logged
    for secret in (client_key, PMS_KEY, settings.webhook_secret.get_secret_value(), TOKEN):
        assert secret not in logged
