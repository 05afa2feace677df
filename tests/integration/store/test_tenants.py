"""The fleet's tenants in the store: settings, encrypted credentials, state, remove --purge."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import inspect, select, text

from tolken.config import TenantSettings
from tolken.errors import ConfigError
from tolken.store import DuplicateTenant, Shadow, Store, UnknownTenant, open_store
from tolken.store._models import Base
from tolken.store._tenants import _tenant_tables

PASSPHRASE = "correct horse battery staple, and then some more"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def settings(tenant_id: str, **changes: object) -> TenantSettings:
    """A tenant whose secrets are recognisable strings, to grep for."""
    values: dict[str, object] = {
        "id": tenant_id,
        "poweroffice_client_key": f"client-key-of-{tenant_id}-7f3a",
        "pms_api_key": f"pms-api-key-of-{tenant_id}-9c1e",
        "webhook_secret": f"webhook-secret-of-{tenant_id}-4d2b",
    }
    return TenantSettings.model_validate(values | changes)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url, clock=lambda: T0) as s:
        yield s


def test_tenant_round_trip(store: Store) -> None:
    """A tenant added comes back with the same settings and credentials, due at once."""
    tenants = store.tenant_registry(PASSPHRASE)
    added = tenants.add(
        settings("acme", pms_base_url="https://pms.acme.test/api/v1", interval_seconds=120)
    )
    tenants.add(settings("beta", conflict_policy="pms-wins"))
    again = store.tenant_registry(PASSPHRASE).get("acme")
    assert again == added
    assert again.settings == settings(
        "acme", pms_base_url="https://pms.acme.test/api/v1", interval_seconds=120
    )
    assert again.settings.poweroffice_client_key.get_secret_value() == "client-key-of-acme-7f3a"
    assert (again.status, again.next_run_at, again.failures_in_a_row) == ("idle", T0, 0)
    assert [t.id for t in tenants.all()] == ["acme", "beta"]
    assert tenants.get("beta").settings.conflict_policy == "pms-wins"


def test_update_replaces_settings_and_credentials(store: Store) -> None:
    """Changing a tenant's PMS key and interval takes effect; unknown or taken ids are refused."""
    tenants = store.tenant_registry(PASSPHRASE)
    tenants.add(settings("acme"))
    tenants.update(settings("acme", pms_api_key="a-new-pms-key-0000", interval_seconds=30))
    changed = tenants.get("acme").settings
    assert changed.pms_api_key.get_secret_value() == "a-new-pms-key-0000"
    assert changed.interval_seconds == 30
    with pytest.raises(DuplicateTenant):
        tenants.add(settings("acme"))
    with pytest.raises(UnknownTenant):
        tenants.update(settings("nobody"))
    with pytest.raises(UnknownTenant):
        tenants.get("nobody")


def test_rekey_moves_every_credential_to_the_new_passphrase(store: Store) -> None:
    """After a rekey the new passphrase opens every credential and the old one is refused."""
    new_passphrase = "a brand new passphrase, long enough for scrypt"
    tenants = store.tenant_registry(PASSPHRASE)
    tenants.add(settings("acme"))
    tenants.add(settings("beta", webhook_secret=None))
    before = {t.id: t.settings for t in tenants.all()}
    with store.engine.connect() as conn:
        tokens_before = conn.execute(text("SELECT pms_api_key_token FROM tenants")).all()

    assert tenants.rekey(SecretStr(new_passphrase)) == 2

    assert {t.id: t.settings for t in tenants.all()} == before  # this registry carries on
    reopened = store.tenant_registry(new_passphrase)
    assert {t.id: t.settings for t in reopened.all()} == before
    with pytest.raises(ConfigError, match="does not match"):
        store.tenant_registry(PASSPHRASE)
    with store.engine.connect() as conn:
        tokens_after = conn.execute(text("SELECT pms_api_key_token FROM tenants")).all()
    assert not set(tokens_before) & set(tokens_after)
    with pytest.raises(ConfigError, match="at least"):
        reopened.rekey(SecretStr("too short"))


def test_no_secret_is_stored_in_clear_text(store: Store) -> None:
    """Read with plain SQL, the database holds no credential and not the passphrase."""
    tenants = store.tenant_registry(PASSPHRASE)
    secrets = [PASSPHRASE]
    for tenant_id in ("acme", "beta"):
        secrets += tenants.add(settings(tenant_id)).settings.secrets()
    assert len(secrets) == 7
    dump = []
    with store.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            dump += [repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"'))]
    text_of_dump = "\n".join(dump)
    assert "acme" in text_of_dump  # the dump did read the tenants
    assert [s for s in secrets if s in text_of_dump] == []


def test_tenants_never_show_their_secrets() -> None:
    """Printing a tenant or its settings shows no credential."""
    shown = repr(settings("acme")) + str(settings("acme"))
    assert [s for s in settings("acme").secrets() if s in shown] == []
    assert "**********" in shown


def test_another_passphrase_is_a_clear_error(store: Store) -> None:
    """Opening the tenants with another secret_key fails at once, naming fleet.secret_key."""
    store.tenant_registry(PASSPHRASE).add(settings("acme"))
    with pytest.raises(ConfigError) as caught:
        store.tenant_registry("another passphrase of more than 32 characters")
    assert caught.value.key == "fleet.secret_key"
    assert "does not match" in str(caught.value)
    assert store.tenant_registry(PASSPHRASE).get("acme").id == "acme"


def test_the_passphrase_is_checked_before_any_tenant_exists(store: Store) -> None:
    """The first secret_key an installation uses is the one it keeps asking for."""
    store.tenant_registry(PASSPHRASE)
    with pytest.raises(ConfigError, match="does not match"):
        store.tenant_registry(PASSPHRASE + "!")


def test_pause_resume_and_due(store: Store) -> None:
    """A paused or already queued tenant is not due; resuming makes it due at once."""
    tenants = store.tenant_registry(PASSPHRASE)
    for tenant_id in ("acme", "beta", "gamma"):
        tenants.add(settings(tenant_id))
    tenants.record_success("gamma", next_run_at=T0 + timedelta(minutes=5))
    assert [t.id for t in tenants.due()] == ["acme", "beta"]
    assert tenants.pause("acme").status == "paused"
    tenants.mark_queued("beta")
    assert tenants.due() == []
    assert [t.id for t in tenants.due(T0 + timedelta(minutes=5))] == ["gamma"]
    tenants.mark_syncing("acme")  # a job that was running when it was paused
    assert tenants.get("acme").status == "paused"
    assert tenants.resume("acme").status == "syncing"


def test_failures_count_up_and_success_resets_them(store: Store) -> None:
    """A failing tenant shows error with its last error and backoff count; success clears it."""
    tenants = store.tenant_registry(PASSPHRASE)
    tenants.add(settings("acme"))
    tenants.record_failure("acme", "pms: 503 Service Unavailable", next_run_at=T0)
    failed = tenants.record_failure("acme", "pms: timed out", next_run_at=T0 + timedelta(1))
    assert (failed.status, failed.last_error, failed.failures_in_a_row) == (
        "error",
        "pms: timed out",
        2,
    )
    assert failed.last_run_at == T0
    ok = tenants.record_success("acme", next_run_at=T0 + timedelta(minutes=1))
    assert (ok.status, ok.last_error, ok.failures_in_a_row) == ("idle", None, 0)


def seed(store: Store, tenant: str) -> None:
    """One row of ``tenant`` in every table of the store."""
    view = store.for_tenant(tenant)
    run_id = view.start_run()
    link = view.create_link("customers", "10001", "c-1")
    view.save_shadow(link.id, Shadow({"name": "Acme AS"}))
    view.add_history(link.id, "to_pms", "create", {"name": "Acme AS"}, "new", run_id=run_id)
    view.record_conflict(
        "customers",
        link.id,
        "name",
        poweroffice_value="A",
        pms_value="B",
        shadow_value="C",
        policy="manual",
        winner="parked",
        run_id=run_id,
    )
    view.set_cursor("pms", "customers", "42")
    view.add_pending_create("projects", "pms", "20001")
    view.record_failure("projects", "pms", "p-1", "ValidationFailed", "code is taken")
    view.remember_delivery(f"sig-{tenant}", 1_700_000_000, 0)
    jobs = store.job_run_log()
    job = jobs.start_job_run(tenant, reason="scheduled", kind="cycle", worker="host-1")
    jobs.finish_job_run(job, outcome="ok", poweroffice_requests=3, run_id=run_id)


def rows_of(store: Store) -> dict[str, int]:
    """Rows per table (tenants and store_meta aside)."""
    counts = {}
    with store.engine.connect() as conn:
        for table, _ in _tenant_tables():
            counts[table.name] = len(conn.execute(select(table)).all())
    return counts


def test_remove_purge_leaves_nothing_of_the_tenant(store: Store) -> None:
    """remove --purge deletes every row of that tenant in every table, and none of another's."""
    tenants = store.tenant_registry(PASSPHRASE)
    for tenant_id in ("acme", "beta"):
        tenants.add(settings(tenant_id))
        seed(store, tenant_id)
    both = rows_of(store)
    assert set(both) == {t.name for t in Base.metadata.sorted_tables} - {"tenants", "store_meta"}
    assert all(count == 2 for count in both.values()), both

    tenants.remove("acme", purge=True)

    assert rows_of(store) == dict.fromkeys(both, 1)
    assert store.for_tenant("acme").list_links() == []
    assert len(store.for_tenant("beta").list_links()) == 1
    assert "acme" not in store.tenants()
    assert [t.id for t in tenants.all()] == ["beta"]
    with pytest.raises(UnknownTenant):
        tenants.remove("acme", purge=True)


def test_remove_without_purge_keeps_the_data(store: Store) -> None:
    """remove without --purge drops the tenant but keeps its links, to carry on if re-added."""
    tenants = store.tenant_registry(PASSPHRASE)
    tenants.add(settings("acme"))
    seed(store, "acme")
    tenants.remove("acme")
    assert tenants.all() == []
    assert len(store.for_tenant("acme").list_links()) == 1


def test_a_tampered_credential_is_a_clear_error(store: Store) -> None:
    """A credential changed in the database is refused with a message, never read as garbage."""
    tenants = store.tenant_registry(PASSPHRASE)
    tenants.add(settings("acme"))
    with store.engine.begin() as conn:
        token = conn.execute(text("SELECT pms_api_key_token FROM tenants")).scalar_one()
        tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
        conn.execute(text("UPDATE tenants SET pms_api_key_token = :t"), {"t": tampered})
    with pytest.raises(ConfigError, match="does not decrypt"):
        tenants.get("acme")


def test_processes_starting_together_agree_on_one_key(store: Store) -> None:
    """Several workers opening a fresh store at once all unlock it, under one salt and key check."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        registries = list(pool.map(lambda _: store.tenant_registry(PASSPHRASE), range(4)))
    registries[0].add(settings("acme"))
    assert all(r.get("acme").id == "acme" for r in registries)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM store_meta")).scalar_one() == 3
