"""POST /webhooks/pms/{tenant}: each tenant's own secret, its own job, single mode's rules."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from integration.fleet_web_harness import fleet_config, jobs, tenant
from tolken.connectors.pms import sign_webhook
from tolken.fleet import PRIORITIES
from tolken.web.fleet_serve import FleetServing, fleet_serving

pytestmark = pytest.mark.postgres

ITEM = {"seq": 7, "type": "customer", "id": "cus_1", "op": "upsert"}
BODY = json.dumps(ITEM).encode()


@pytest.fixture
def running(postgres_url: str) -> Iterator[FleetServing]:
    with fleet_serving(fleet_config(postgres_url)) as served:
        served.fleet.registry.add(tenant("alpha"))
        served.fleet.registry.add(tenant("beta"))
        yield served


def _deliver(
    running: FleetServing, tenant_id: str, secret: str, body: bytes = BODY
) -> httpx.Response:
    headers = sign_webhook(secret, body)
    return httpx.post(f"{running.url}/webhooks/pms/{tenant_id}", content=body, headers=headers)


def _secret(tenant_id: str) -> str:
    found = tenant(tenant_id).webhook_secret
    assert found is not None
    return found.get_secret_value()


def test_a_delivery_signed_with_the_tenants_secret_queues_its_job(running: FleetServing) -> None:
    """Alpha's delivery with alpha's secret: 202 and one webhook-priority job for alpha only."""
    answer = _deliver(running, "alpha", _secret("alpha"))
    assert answer.status_code == 202
    assert (answer.json()["accepted"], answer.json()["queued"]) == (True, True)
    [job] = jobs(running.fleet, "alpha")
    assert (job["status"], job["priority"]) == ("todo", PRIORITIES["webhook"])
    assert jobs(running.fleet, "beta") == []
    assert running.fleet.registry.get("alpha").status == "queued"


def test_another_tenants_secret_is_refused(running: FleetServing) -> None:
    """Alpha's delivery signed with beta's secret (or none) is 401 and queues nothing."""
    assert _deliver(running, "alpha", _secret("beta")).status_code == 401
    assert httpx.post(f"{running.url}/webhooks/pms/alpha", content=BODY).status_code == 401
    assert jobs(running.fleet, "alpha") == []


def test_an_unknown_tenant_is_404(running: FleetServing) -> None:
    """A delivery for a tenant that does not exist is 404 and queues nothing."""
    answer = _deliver(running, "nobody", _secret("alpha"))
    assert answer.status_code == 404
    assert jobs(running.fleet, "nobody") == []


def test_a_replayed_delivery_is_refused(running: FleetServing) -> None:
    """The same signed delivery twice: the second is 401."""
    headers = sign_webhook(_secret("alpha"), BODY)
    url = f"{running.url}/webhooks/pms/alpha"
    assert httpx.post(url, content=BODY, headers=headers).status_code == 202
    assert httpx.post(url, content=BODY, headers=headers).status_code == 401


def test_a_burst_of_deliveries_waits_as_one_job(running: FleetServing) -> None:
    """Five deliveries for alpha leave one waiting job; later ones say a job waits already."""
    answers = [
        _deliver(running, "alpha", _secret("alpha"), json.dumps({**ITEM, "seq": n}).encode())
        for n in range(5)
    ]
    assert [a.status_code for a in answers] == [202] * 5
    assert [a.json()["queued"] for a in answers] == [True, False, False, False, False]
    assert len(jobs(running.fleet, "alpha")) == 1


def test_a_paused_tenants_delivery_is_accepted_without_a_job(running: FleetServing) -> None:
    """Paused: 202 with a note that no job was queued; the change waits in the PMS feed."""
    running.fleet.registry.pause("beta")
    answer = _deliver(running, "beta", _secret("beta"))
    assert answer.status_code == 202
    assert answer.json()["queued"] is False
    assert "paused" in answer.json()["note"]
    assert jobs(running.fleet, "beta") == []


def test_a_tenant_without_a_webhook_secret_refuses_deliveries(running: FleetServing) -> None:
    """No secret stored for the tenant: every delivery is 401."""
    running.fleet.registry.add(tenant("gamma", webhook_secret=None))
    answer = _deliver(running, "gamma", _secret("alpha"))
    assert answer.status_code == 401
    assert "no webhook secret" in answer.json()["error"]


def test_an_oversized_delivery_is_413(running: FleetServing) -> None:
    """A body over 1 MiB is refused before it is read whole."""
    body = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    assert _deliver(running, "alpha", _secret("alpha"), body).status_code == 413
