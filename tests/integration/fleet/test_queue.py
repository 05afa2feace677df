"""The job queue on PostgreSQL: one waiting job per tenant, the schema applied once."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from integration.fleet.fleet_harness import FleetSandbox

pytestmark = pytest.mark.postgres


def test_a_burst_collapses_into_one_waiting_job_with_the_strongest_asks(
    sandbox: FleetSandbox,
) -> None:
    """Scheduled, webhook and resync for one tenant: one job, webhook priority, a reconcile."""
    sandbox.add_tenants("burst", "other")
    with sandbox.fleet() as fleet:
        assert fleet.queue_sync("burst", "scheduled") is True
        assert fleet.queue_sync("burst", "webhook") is False
        assert fleet.queue_sync("burst", "resync") is False
        assert fleet.queue_sync("other", "backfill") is True
        assert fleet.queue_depth() == 2
        assert fleet.registry.get("burst").status == "queued"
        with fleet.store.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT priority, args->>'reason', (args->>'reconcile')::boolean "
                    "FROM procrastinate_jobs WHERE lock = 'burst'"
                )
            ).one()
        assert tuple(row) == (20, "webhook", True)
        assert fleet.waiting() == {"burst": 20, "other": 0}


def test_a_paused_tenant_is_not_queued(sandbox: FleetSandbox) -> None:
    """queue_sync refuses a paused tenant: it makes no request until resumed."""
    sandbox.add_tenants("paused", paused=True)
    with sandbox.fleet() as fleet:
        assert fleet.queue_sync("paused", "webhook") is False
        assert fleet.queue_depth() == 0


def test_opening_the_fleet_again_applies_the_job_schema_once(sandbox: FleetSandbox) -> None:
    """A second open finds procrastinate's tables and keeps the jobs waiting in them."""
    sandbox.add_tenants("kept")
    with sandbox.fleet() as fleet:
        fleet.queue_sync("kept", "scheduled")
    with sandbox.fleet() as fleet:
        assert fleet.queue_depth() == 1
