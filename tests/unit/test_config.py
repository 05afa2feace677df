"""Config errors name the file, line and key; secrets come from the environment."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from tolken.config import (
    FleetConfig,
    TenantSettings,
    TolkenConfig,
    load_any_config,
    load_config,
    load_fleet_config,
)
from tolken.errors import ConfigError

GOOD = """\
poweroffice:
  application_key: ${APP}
  client_key: client-key-1
  subscription_key: subscription-key-1
pms:
  base_url: http://127.0.0.1:1/api/v1
  api_key: pms-api-key-1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tolken.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_env_reference_is_expanded(tmp_path: Path) -> None:
    """${VAR} is replaced from the environment and kept secret in reprs."""
    config = load_config(write(tmp_path, GOOD), environ={"APP": "s3cret-app-key"})
    assert config.poweroffice.application_key.get_secret_value() == "s3cret-app-key"
    assert "s3cret-app-key" not in repr(config)
    assert "s3cret-app-key" in config.secrets()


def test_missing_env_var_names_key_and_line(tmp_path: Path) -> None:
    """An unset variable is reported with the line that references it."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD), environ={})
    assert str(info.value).endswith(
        "tolken.yaml:2: application_key: environment variable APP is not set"
    )


def test_unknown_key_is_rejected_with_line(tmp_path: Path) -> None:
    """A typo in a key is an error naming the line, not silently ignored."""
    text = GOOD + "sync:\n  interval_secnds: 5\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={"APP": "application-key"})
    assert info.value.location is not None
    assert info.value.location.endswith(":9")
    assert info.value.key == "sync.interval_secnds"


def test_bad_value_is_rejected(tmp_path: Path) -> None:
    """An unknown conflict policy is refused."""
    text = GOOD + "sync:\n  conflict_policy: coin-flip\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={"APP": "application-key"})
    assert info.value.key == "sync.conflict_policy"


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    """Broken YAML is reported with its line."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "pms: [\n  a: b\n"), environ={})
    assert info.value.location is not None
    assert ":" in info.value.location


# -- fleet mode ----------------------------------------------------------------------

FLEET = """\
store: postgresql+psycopg://tolken:${DB_PASSWORD}@db:5432/tolken
poweroffice:
  application_key: application-key
  subscription_key: subscription-key
  requests_per_second: 8
pms:
  base_url: https://pms.example.com/api/v1
  timeout_seconds: 12
sync:
  interval_seconds: 300
  conflict_policy: poweroffice-wins
serve:
  token: dashboard-token-0123456789
fleet:
  secret_key: ${TOLKEN_SECRET_KEY}
"""
FLEET_ENV = {"DB_PASSWORD": "pw", "TOLKEN_SECRET_KEY": "a passphrase of well over 32 characters"}


def test_a_fleet_section_makes_a_fleet_config(tmp_path: Path) -> None:
    """A config with fleet: and no client_key loads in fleet mode, with concurrency 4 by default."""
    config = load_any_config(write(tmp_path, FLEET), environ=FLEET_ENV)
    assert isinstance(config, FleetConfig)
    assert config.fleet.concurrency == 4
    assert config.poweroffice.requests_per_second == 8
    assert FLEET_ENV["TOLKEN_SECRET_KEY"] in config.secrets()
    assert FLEET_ENV["TOLKEN_SECRET_KEY"] not in repr(config)
    assert load_fleet_config(write(tmp_path, FLEET), environ=FLEET_ENV) == config
    assert isinstance(
        load_any_config(write(tmp_path, GOOD), environ={"APP": "application-key"}), TolkenConfig
    )


@pytest.mark.parametrize("reserve", ["-0.1", "1", "1.5"])
def test_a_webhook_reserve_is_a_share_below_one(tmp_path: Path, reserve: str) -> None:
    """fleet.webhook_reserve (0.3 by default) is a share of the budget: 0 up to, not with, 1."""
    config = load_fleet_config(write(tmp_path, FLEET), environ=FLEET_ENV)
    assert config.fleet.webhook_reserve == 0.3
    with pytest.raises(ConfigError) as info:
        load_fleet_config(
            write(tmp_path, FLEET + f"  webhook_reserve: {reserve}\n"), environ=FLEET_ENV
        )
    assert info.value.key == "fleet.webhook_reserve"


@pytest.mark.parametrize("secret_key", ["", "x" * 31])
def test_a_short_secret_key_is_refused(tmp_path: Path, secret_key: str) -> None:
    """fleet.secret_key shorter than 32 characters is an error naming the key."""
    with pytest.raises(ConfigError) as info:
        load_any_config(
            write(tmp_path, FLEET), environ=FLEET_ENV | {"TOLKEN_SECRET_KEY": secret_key}
        )
    assert info.value.key == "fleet.secret_key"
    assert "at least 32 characters" in str(info.value)


@pytest.mark.parametrize(
    "store", ["store: sqlite:///tolken.db\n", "store: 'sqlite+pysqlite:///:memory:'\n", ""]
)
def test_fleet_mode_needs_postgresql(tmp_path: Path, store: str) -> None:
    """A fleet config with a SQLite store, or none, is refused, saying PostgreSQL is needed."""
    text = store + FLEET.split("\n", 1)[1]
    with pytest.raises(ConfigError) as info:
        load_any_config(write(tmp_path, text), environ=FLEET_ENV)
    assert info.value.key == "store"
    assert "fleet mode needs a PostgreSQL store" in str(info.value)


def test_fleet_mode_refuses_a_client_key(tmp_path: Path) -> None:
    """fleet: together with poweroffice.client_key is an error: client keys belong to tenants."""
    text = FLEET.replace(
        "  subscription_key: subscription-key\n",
        "  subscription_key: subscription-key\n  client_key: client-key\n",
    )
    with pytest.raises(ConfigError) as info:
        load_any_config(write(tmp_path, text), environ=FLEET_ENV)
    assert info.value.key == "poweroffice.client_key"


def test_each_loader_insists_on_its_mode(tmp_path: Path) -> None:
    """A single-mode command given a fleet config, or the reverse, says which mode the file is."""
    with pytest.raises(ConfigError, match="this is a fleet config"):
        load_config(write(tmp_path, FLEET), environ=FLEET_ENV)
    with pytest.raises(ConfigError, match="this is a single-mode config"):
        load_fleet_config(write(tmp_path, GOOD), environ={"APP": "application-key"})


def tenant(**changes: object) -> TenantSettings:
    """The settings of tenant acme, changed by ``changes``."""
    values: dict[str, object] = {
        "id": "acme",
        "poweroffice_client_key": "client-key-of-acme",
        "pms_api_key": "pms-key-of-acme",
    }
    return TenantSettings.model_validate(values | changes)


def test_a_tenant_config_is_the_single_mode_shape(tmp_path: Path) -> None:
    """The config that syncs one tenant is a single-mode config: its keys, the fleet's defaults."""
    fleet = load_fleet_config(write(tmp_path, FLEET), environ=FLEET_ENV)
    config = fleet.tenant_config(tenant())
    assert TolkenConfig.model_validate(config.model_dump()) == config
    assert config.tenant == "acme"
    assert config.store == fleet.store
    assert config.poweroffice.client_key.get_secret_value() == "client-key-of-acme"
    assert config.poweroffice.application_key.get_secret_value() == "application-key"
    assert config.poweroffice.requests_per_second == 8
    assert config.pms.api_key_value() == "pms-key-of-acme"
    assert (config.pms.base_url, config.pms.timeout_seconds) == (fleet.pms.base_url, 12)
    assert (config.sync.interval_seconds, config.sync.conflict_policy) == (300, "poweroffice-wins")
    assert config.serve == fleet.serve


def test_a_tenants_own_settings_override_the_fleets(tmp_path: Path) -> None:
    """A tenant's PMS URL, interval, conflict policy and webhook secret win over the fleet's."""
    fleet = load_fleet_config(write(tmp_path, FLEET), environ=FLEET_ENV)
    own = tenant(
        pms_base_url="https://pms.acme.test/api/v1",
        interval_seconds=60,
        conflict_policy="manual",
        webhook_secret="webhook-secret-of-acme",
    )
    config = fleet.tenant_config(own)
    assert config.pms.base_url == "https://pms.acme.test/api/v1"
    assert (config.sync.interval_seconds, config.sync.conflict_policy) == (60, "manual")
    assert config.serve is not None
    assert config.serve.webhook_secret is not None
    assert config.serve.webhook_secret.get_secret_value() == "webhook-secret-of-acme"
    assert fleet.serve is not None
    assert config.serve.token == fleet.serve.token


def test_a_tenant_needs_a_pms_base_url_somewhere(tmp_path: Path) -> None:
    """Without the tenant's or the fleet's PMS base URL, building its config says so."""
    text = FLEET.replace("  base_url: https://pms.example.com/api/v1\n", "")
    fleet = load_fleet_config(write(tmp_path, text), environ=FLEET_ENV)
    with pytest.raises(ConfigError, match="no PMS base URL"):
        fleet.tenant_config(tenant())
    assert (
        fleet.tenant_config(tenant(pms_base_url="https://p.test")).pms.base_url == "https://p.test"
    )


@pytest.mark.parametrize(
    "changes",
    [{"id": "has space"}, {"id": ""}, {"webhook_secret": "short"}, {"interval_seconds": 0}],
)
def test_bad_tenant_settings_are_refused(changes: dict[str, object]) -> None:
    """Tenant ids usable in URLs, webhook secrets of 16+ characters and positive intervals only."""
    with pytest.raises(ValidationError):
        tenant(**changes)


def test_a_key_too_short_to_redact_is_refused(tmp_path: Path) -> None:
    """An API key under 8 characters is refused at load, naming its key and line."""
    text = GOOD.replace("api_key: pms-api-key-1", "api_key: ab1")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={"APP": "application-key"})
    assert info.value.key == "pms.api_key"
    assert str(info.value).startswith(f"{tmp_path / 'tolken.yaml'}:7: pms.api_key: ")
    assert "shorter than 8 characters" in str(info.value)
