"""One PowerOffice budget across worker processes; a webhook job is not held up by a backfill."""

from __future__ import annotations

import time

import pytest

from integration.fleet.fleet_harness import FleetSandbox, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _answered(stats: dict[str, object]) -> tuple[int, int]:
    statuses = stats["statuses"]
    assert isinstance(statuses, dict)
    return sum(statuses.values()), statuses.get("429", 0)


def test_three_workers_share_one_budget_used_fully_and_rarely_throttled(
    sandbox: FleetSandbox,
) -> None:
    """More demand than 10 req/s from three workers: >= 90 % of the budget used, < 1 % 429."""
    sandbox.write_config(interval=0.2, concurrency=4)
    names = [f"b{i}" for i in range(40)]  # always more due than 12 slots can take
    sandbox.add_tenants(*names)
    for _ in range(3):
        sandbox.start_worker()
    wait_until(
        lambda: _answered(sandbox.po_stats())[0] > 40, timeout=30, what="the workers at work"
    )
    before, started = sandbox.po_stats(), time.monotonic()
    time.sleep(8)
    after, seconds = sandbox.po_stats(), time.monotonic() - started
    assert sandbox.stop_workers() == [0, 0, 0]

    requests = _answered(after)[0] - _answered(before)[0]
    throttled = _answered(after)[1] - _answered(before)[1]
    used = requests / (10 * seconds)
    assert used >= 0.9, f"{requests} requests in {seconds:.1f} s: {used:.0%} of the budget"
    assert throttled / requests < 0.01, f"{throttled} of {requests} answered 429"


def test_a_webhook_job_reaches_poweroffice_within_2_s_during_a_backfill(
    sandbox: FleetSandbox,
) -> None:
    """Tenant A's webhook job writes to A's PowerOffice within 2 s while B backfills 10,000."""
    sandbox.write_config(interval=1, concurrency=2)
    sandbox.seed_poweroffice("hook", customers=3)
    sandbox.add_tenants("hook")
    sandbox.start_worker()
    wait_until(lambda: sandbox.links("hook") == 3, timeout=30, what="tenant A linked")
    sandbox.seed_poweroffice("bulk", customers=10_000)
    sandbox.add_tenants("bulk")
    sandbox.add_tenants("busy-1", "busy-2", interval_seconds=0.2)  # scheduled jobs keep coming
    wait_until(
        lambda: _state(sandbox, "bulk") == "syncing" and sandbox.links("bulk") > 100,
        timeout=30,
        what="tenant B's backfill under way",
    )
    customer = sandbox.pms_customers("hook")[0]
    sandbox.pms_update_customer("hook", customer["id"], {"phone": "+4799999999"})

    patches = _patches(sandbox, "hook")
    started = time.monotonic()
    with sandbox.fleet() as fleet:
        assert fleet.queue_sync("hook", "webhook") in (True, False)
    took = wait_until(
        lambda: _patches(sandbox, "hook") > patches, timeout=10, what="A's edit in PowerOffice"
    )
    took = time.monotonic() - started
    assert _state(sandbox, "bulk") == "syncing"  # the backfill was still going
    assert sandbox.stop_workers() == [0]
    assert took < 2.0, f"{took:.2f} s"


def _patches(sandbox: FleetSandbox, name: str) -> int:
    requests = sandbox.po_stats(name)["requests"]
    return int(requests.get("PATCH /v2/Customers/{id}", 0))


def _state(sandbox: FleetSandbox, name: str) -> str:
    with sandbox.fleet() as fleet:
        return fleet.registry.get(name).status
