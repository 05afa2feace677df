"""Two tenants on one store behind the real app: settling and retrying stay inside one tenant."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from integration.web_harness import AUTH, Clock, make_config, seed
from tolken.store import ConflictRecord, Store, TenantStore, open_store
from tolken.web import create_app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(store_url: str, clock: Clock) -> Iterator[Store]:
    """SQLite, then PostgreSQL (when TOLKEN_TEST_POSTGRES_URL is set)."""
    with open_store(store_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def alpha(db: Store) -> TenantStore:
    return db.for_tenant("alpha")


@pytest.fixture
def ids(alpha: TenantStore, clock: Clock) -> dict[str, int]:
    return seed(alpha, clock)


def _client(db: Store, tmp_path: Path, tenant: str) -> TestClient:
    config = make_config(tmp_path).model_copy(update={"tenant": tenant})
    return TestClient(create_app(config, db.for_tenant(tenant)))


@pytest.fixture
def alpha_client(db: Store, tmp_path: Path) -> TestClient:
    return _client(db, tmp_path, "alpha")


@pytest.fixture
def beta_client(db: Store, tmp_path: Path) -> TestClient:
    return _client(db, tmp_path, "beta")


def _conflict(store: TenantStore, conflict_id: int) -> ConflictRecord:
    [found] = [c for c in store.list_conflicts() if c.id == conflict_id]
    return found


def test_settling_a_settled_conflict_again_is_409_and_keeps_the_first_choice(
    alpha_client: TestClient, alpha: TenantStore, ids: dict[str, int], clock: Clock
) -> None:
    """A second settle of one conflict answers 409 and leaves its winner and time as they were."""
    url = f"/api/conflicts/{ids['parked']}/resolve"
    first = alpha_client.post(url, params={"winner": "poweroffice"}, headers=AUTH)
    assert first.status_code == 200
    settled = _conflict(alpha, ids["parked"])
    assert (settled.winner, settled.resolved) == ("poweroffice", True)
    clock.now += timedelta(minutes=5)
    again = alpha_client.post(url, params={"winner": "pms"}, headers=AUTH)
    assert again.status_code == 409
    assert "already settled" in again.json()["error"]
    form = alpha_client.post(
        f"/conflicts/{ids['parked']}/resolve",
        data={"winner": "pms"},
        headers=AUTH,
        follow_redirects=False,
    )
    assert form.status_code == 409
    assert _conflict(alpha, ids["parked"]) == settled


def test_a_conflict_its_policy_settled_cannot_be_settled_by_hand(
    alpha_client: TestClient, alpha: TenantStore, ids: dict[str, int]
) -> None:
    """A conflict newest-wins already decided answers 409; its recorded winner stays."""
    before = _conflict(alpha, ids["won"])
    answer = alpha_client.post(
        f"/api/conflicts/{ids['won']}/resolve", params={"winner": "poweroffice"}, headers=AUTH
    )
    assert answer.status_code == 409
    assert _conflict(alpha, ids["won"]) == before


def test_another_tenants_conflict_is_not_found_and_stays_parked(
    beta_client: TestClient, alpha: TenantStore, ids: dict[str, int]
) -> None:
    """Tenant beta's dashboard cannot settle alpha's conflict: 404, and it is still parked."""
    before = _conflict(alpha, ids["parked"])
    api = beta_client.post(
        f"/api/conflicts/{ids['parked']}/resolve", params={"winner": "pms"}, headers=AUTH
    )
    assert api.status_code == 404
    form = beta_client.post(
        f"/conflicts/{ids['parked']}/resolve",
        data={"winner": "pms"},
        headers=AUTH,
        follow_redirects=False,
    )
    assert form.status_code == 404
    assert _conflict(alpha, ids["parked"]) == before
    assert before.winner == "parked"


def test_another_tenants_failure_cannot_be_retried_or_read(
    beta_client: TestClient, alpha: TenantStore, ids: dict[str, int]
) -> None:
    """Tenant beta's retry of alpha's parked record is 404 and leaves its backoff alone."""
    [before] = alpha.list_failures()
    api = beta_client.post(f"/api/failures/{ids['failure']}/retry", headers=AUTH)
    assert api.status_code == 404
    form = beta_client.post(
        f"/failures/{ids['failure']}/retry", headers=AUTH, follow_redirects=False
    )
    assert form.status_code == 404
    assert beta_client.post("/api/failures/retry", headers=AUTH).json() == {"retried": 0}
    assert alpha.list_failures() == [before]
    assert beta_client.get(f"/api/failures/{ids['failure']}", headers=AUTH).status_code == 404


def test_another_tenants_pages_show_none_of_its_rows(
    beta_client: TestClient, ids: dict[str, int]
) -> None:
    """Tenant beta's dashboard lists no link, conflict, failure or run of alpha's."""
    assert beta_client.get(f"/api/links/{ids['acme']}", headers=AUTH).status_code == 404
    assert beta_client.get("/api/links", headers=AUTH).json()["links"] == []
    assert beta_client.get("/api/conflicts", headers=AUTH).json() == []
    assert beta_client.get("/api/failures?all=true", headers=AUTH).json() == []
    status = beta_client.get("/api/status", headers=AUTH).json()
    assert status["tenant"] == "beta"
    assert (status["runs"], status["recent"]) == ([], [])
    assert status["totals"] == {"failures": 0, "conflicts": 0, "links": 0}
