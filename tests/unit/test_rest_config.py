"""A ``pms.rest`` section is checked at load: what is wrong is named by file, line and key."""

from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from tolken.cli import app
from tolken.config import TenantSettings, TolkenConfig, load_config, load_fleet_config
from tolken.errors import ConfigError

HEAD = """\
poweroffice:
  application_key: application-key-1
  client_key: client-key-1
  subscription_key: subscription-key-1
pms:
  base_url: http://127.0.0.1:1
  connector: rest
"""

REST = """\
  api_key: pms-api-key-1
  rest:
    auth:
      type: bearer
    body:
      list_path: items
    idempotency:
      reference_field: external_ref
"""


def load(tmp_path: Path, text: str) -> TolkenConfig:
    path = tmp_path / "tolken.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


def test_a_described_pms_loads_and_is_polled_without_a_feed(tmp_path: Path) -> None:
    """A minimal section loads; without a feed, change capture becomes polling by itself."""
    config = load(tmp_path, HEAD + REST)
    assert config.pms.rest is not None
    assert config.pms.change_capture == "polling"


def test_a_pms_with_no_way_to_make_creates_idempotent_is_refused(tmp_path: Path) -> None:
    """Neither an idempotency header nor a reference field: refused, naming both and the line."""
    text = HEAD + REST.replace("      reference_field: external_ref\n", "      header:\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.key == "pms.rest.idempotency"
    assert info.value.location is not None
    assert info.value.location.endswith("tolken.yaml:14")
    assert "header: Idempotency-Key" in str(info.value)
    assert "reference_field: external_ref" in str(info.value)
    assert "duplicate" in str(info.value)


def test_an_unknown_key_in_the_section_names_it(tmp_path: Path) -> None:
    """A typo inside ``pms.rest`` is an error with its dotted key and line."""
    text = HEAD + REST.replace("list_path: items", "list_pth: items")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.key == "pms.rest.body.list_pth"
    assert info.value.location is not None
    assert info.value.location.endswith(":13")


def test_an_api_key_auth_needs_to_say_where_the_key_goes(tmp_path: Path) -> None:
    """``type: api-key`` without ``header:`` or ``query:`` is refused at ``pms.rest.auth``."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, HEAD + REST.replace("type: bearer", "type: api-key"))
    assert info.value.key == "pms.rest.auth"
    assert "header:" in str(info.value)


def test_the_rest_connector_needs_its_section(tmp_path: Path) -> None:
    """``connector: rest`` and no ``rest:`` section is refused, pointing at the docs."""
    with pytest.raises(ConfigError, match=r"pms\.rest: section"):
        load(tmp_path, HEAD + "  api_key: pms-api-key-1\n")


def test_a_section_for_another_connector_is_refused(tmp_path: Path) -> None:
    """A ``rest:`` section beside the built-in connector would be ignored: refused instead."""
    with pytest.raises(ConfigError, match=r"only with pms\.connector: rest"):
        load(tmp_path, HEAD.replace("connector: rest", "connector: pms") + REST)


def test_the_changes_feed_needs_a_described_feed(tmp_path: Path) -> None:
    """``change_capture: changes`` with an updated-since section is refused, saying what to do."""
    with pytest.raises(ConfigError, match="change_capture: polling"):
        load(tmp_path, HEAD + "  change_capture: changes\n" + REST)


def test_an_api_without_credentials_needs_no_key(tmp_path: Path) -> None:
    """``auth.type: none`` loads without ``pms.api_key``; any other auth still needs one."""
    no_key = REST.replace("  api_key: pms-api-key-1\n", "")
    config = load(tmp_path, HEAD + no_key.replace("type: bearer", "type: none"))
    assert config.pms.api_key is None
    with pytest.raises(ConfigError, match="api_key is required"):
        load(tmp_path, HEAD + no_key)


def test_the_cli_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    """``tolken sync`` with a section that cannot make creates safe stops with exit 2."""
    path = tmp_path / "tolken.yaml"
    path.write_text(HEAD + REST.replace("reference_field: external_ref", "header:"), "utf-8")
    result = CliRunner().invoke(app, ["sync", "--config", str(path), "--once"])
    assert result.exit_code == 2
    assert f"{path}:14" in result.stderr
    assert "pms.rest.idempotency" in result.stderr


def test_every_tenant_of_a_fleet_gets_the_described_pms(tmp_path: Path) -> None:
    """In fleet mode the ``pms.rest`` section reaches each tenant's config, with its own key."""
    text = """\
store: postgresql+psycopg://tolken:pw@db:5432/tolken
poweroffice:
  application_key: application-key
  subscription_key: subscription-key
pms:
  base_url: https://pms.example.com
  connector: rest
  rest:
    resources:
      customers:
        path: /clients
        delete: false
    idempotency:
      header: Idempotency-Key
fleet:
  secret_key: a passphrase of well over 32 characters
"""
    path = tmp_path / "tolken.yaml"
    path.write_text(text, encoding="utf-8")
    fleet = load_fleet_config(path, environ={})
    tenant = TenantSettings(
        id="acme",
        poweroffice_client_key=SecretStr("client-key-of-acme"),
        pms_api_key=SecretStr("pms-key-of-acme"),
    )
    config = fleet.tenant_config(tenant)
    assert config.pms.rest == fleet.pms.rest
    assert config.pms.rest is not None
    assert config.pms.rest.resources.customers.delete is False
    assert config.pms.change_capture == "polling"
    assert config.pms.api_key_value() == "pms-key-of-acme"
