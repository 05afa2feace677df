"""The pure parts of fleet jobs: the backoff of a failing tenant, ids for onboarded clients."""

from __future__ import annotations

import pytest

from tolken._redact import REDACTED, redacting
from tolken._redact import shared as shared_redactor
from tolken.fleet import PRIORITIES, retry_delay, tenant_id_for


def test_a_failing_tenant_backs_off_exponentially_up_to_an_hour() -> None:
    """A tenant failing again and again waits its interval, then twice, four times ..., <= 1 h."""
    delays = [retry_delay(60, failures) for failures in range(8)]
    assert delays[:4] == [60, 120, 240, 480]
    assert delays[-1] == 3600
    assert retry_delay(60, 1000) == 3600


def test_a_tenant_with_a_long_interval_is_never_retried_sooner_than_it() -> None:
    """The cap never shortens a tenant's own interval."""
    assert retry_delay(7200, 3) == 7200


def test_webhooks_go_before_scheduled_jobs_before_backfills_and_resyncs() -> None:
    """procrastinate takes the highest priority first: webhook > scheduled > backfill/resync."""
    assert PRIORITIES["webhook"] > PRIORITIES["scheduled"] > PRIORITIES["backfill"]
    assert PRIORITIES["backfill"] == PRIORITIES["resync"]


@pytest.mark.parametrize(
    ("name", "taken", "expected"),
    [
        ("Fjord Regnskap AS", set(), "fjord-regnskap-as"),
        ("Fjord Regnskap AS", {"fjord-regnskap-as"}, "fjord-regnskap-as-2"),
        ("Ærlig & Co", set(), "rlig-co"),
        ("***", set(), "client"),
    ],
)
def test_onboarded_clients_get_readable_unique_tenant_ids(
    name: str, taken: set[str], expected: str
) -> None:
    """An onboarded client's tenant id comes from its name and never takes an existing id."""
    assert tenant_id_for(name, taken) == expected


def test_a_jobs_tenant_keys_are_redacted_inside_its_block_only() -> None:
    """Inside a job's block the process's redactor hides the tenant's key, and forgets it after."""
    key = "tenant-only-client-key-4711"
    with redacting([key]):
        assert shared_redactor().text(f"token for {key}") == f"token for {REDACTED}"
    assert key not in shared_redactor().secrets
    assert shared_redactor().text(key) == key
