"""Worker processes on a real PostgreSQL against the sandbox: jobs, kills, pauses, purges."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest
from sqlalchemy.engine import make_url

from integration.fleet.fleet_harness import FleetSandbox, run_tolken, wait_until
from tolken.connectors.ratelimit import libpq_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_killed_worker_loses_and_duplicates_no_record(sandbox: FleetSandbox) -> None:
    """Three workers, one SIGKILLed mid-job: each tenant's customers arrive once, in its own PMS."""
    sandbox.write_config(concurrency=2, stalled_after=4)
    names = ("k1", "k2", "k3", "k4")
    for index, name in enumerate(names):
        sandbox.seed_poweroffice(name, customers=400 + index)  # a different seed each
    expected = {name: sandbox.po_customer_keys(name) for name in names}
    assert len({tuple(v) for v in expected.values()}) == len(names)  # the tenants' data differ
    sandbox.add_tenants(*names)

    doomed = sandbox.start_worker()
    wait_until(lambda: '"tenant sync started"' in doomed.log(), timeout=30, what="a job started")
    doomed.kill()
    sandbox.start_worker()
    sandbox.start_worker()

    for name in names:
        wait_until(
            lambda name=name: sandbox.links(name) == len(expected[name]),
            timeout=60,
            what=f"{name} fully linked",
        )
    assert sandbox.stop_workers()[1:] == [0, 0]
    for name in names:
        arrived = sandbox.pms_customer_keys(name)
        duplicates = [key for key, count in Counter(arrived).items() if count > 1]
        assert duplicates == [], name
        assert arrived == expected[name], name
    logs = sandbox.logs()
    assert "job of a dead worker queued again" in logs


def test_a_paused_tenant_makes_no_request_and_catches_up_after_resume(
    sandbox: FleetSandbox,
) -> None:
    """A paused tenant sends nothing to either system while others sync; resumed, it catches up."""
    sandbox.write_config(interval=1, concurrency=2)
    sandbox.seed_poweroffice("on", customers=30)
    sandbox.seed_poweroffice("off", customers=31)
    sandbox.add_tenants("on")
    sandbox.add_tenants("off", paused=True)
    sandbox.start_worker()

    wait_until(lambda: sandbox.links("on") == 30, timeout=30, what="the running tenant synced")
    wait_until(
        lambda: len(sandbox.po_stats("on")["requests"]) and _cycles(sandbox, "on") >= 3,
        timeout=30,
        what="three cycles of the running tenant",
    )
    assert sandbox.po_stats("off")["requests"] == {}
    assert sandbox.pms_stats("off")["requests"] == {}

    result = run_tolken(sandbox, "tenants", "resume", "off")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: sandbox.links("off") == 31, timeout=30, what="the resumed tenant caught up")
    assert sandbox.stop_workers() == [0]


def _cycles(sandbox: FleetSandbox, name: str) -> int:
    with sandbox.fleet() as fleet:
        return sum(run.outcome == "ok" for run in fleet.runs(name))


def test_remove_purge_leaves_nothing_of_the_tenant_in_any_table(sandbox: FleetSandbox) -> None:
    """After tenants remove --purge, no row of any table in the database names the tenant."""
    sandbox.seed_poweroffice("purge-me-q7", customers=20)
    sandbox.seed_poweroffice("stays", customers=21)
    sandbox.add_tenants("purge-me-q7", "stays")
    sandbox.start_worker()
    for name, count in (("purge-me-q7", 20), ("stays", 21)):
        wait_until(lambda n=name, c=count: sandbox.links(n) == c, timeout=30, what=f"{name}")
    assert sandbox.stop_workers() == [0]
    with sandbox.fleet() as fleet:
        fleet.queue_sync("purge-me-q7", "webhook")  # a waiting job goes too
    assert _rows_naming(sandbox, "purge-me-q7")

    result = run_tolken(sandbox, "tenants", "remove", "purge-me-q7", "--purge")

    assert result.returncode == 0, result.stderr
    assert _rows_naming(sandbox, "purge-me-q7") == {}
    assert _rows_naming(sandbox, "stays")


def _rows_naming(sandbox: FleetSandbox, text: str) -> dict[str, int]:
    """Rows per table of the test's schema whose text form contains ``text``."""
    from sqlalchemy import create_engine
    from sqlalchemy import text as sql

    engine = create_engine(sandbox.store_url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sql(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
                )
            ).scalars()
            found = {}
            for table in list(tables):
                count = conn.execute(
                    sql(f'SELECT count(*) FROM "{table}" AS r WHERE r::text LIKE :pattern'),
                    {"pattern": f"%{text}%"},
                ).scalar_one()
                if count:
                    found[table] = int(count)
            return found
    finally:
        engine.dispose()


def test_no_credential_in_clear_text_in_the_database_or_the_logs(sandbox: FleetSandbox) -> None:
    """A pg_dump of the store and every worker log line hold no client key, API key or secret."""
    names = ("cred-a", "cred-b")
    for name in names:
        sandbox.seed_poweroffice(name, customers=10)
    sandbox.add_tenants(*names)
    sandbox.start_worker()
    for name in names:
        wait_until(lambda n=name: sandbox.links(n) == 10, timeout=30, what=f"{name} synced")
    assert sandbox.stop_workers() == [0]
    url = make_url(sandbox.store_url)
    schema = url.query["options"].split("=", 1)[1]
    dump = subprocess.run(
        [
            "pg_dump",
            "--schema",
            schema,
            "--data-only",
            libpq_url(url.set(query={}).render_as_string(hide_password=False)),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "cred-a" in dump  # the dump has the tenants' rows
    logs = sandbox.logs()
    assert '"tenant": "cred-b"' in logs
    for secret in sandbox.secrets(*names):
        assert secret not in dump, secret
        assert secret not in logs, secret
