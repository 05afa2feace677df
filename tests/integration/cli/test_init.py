"""`tolken init` writes a starter config that loads once its variables are set."""

from pathlib import Path

from typer.testing import CliRunner

from tolken.cli import app
from tolken.config import load_config

ENV = {
    "POWEROFFICE_APPLICATION_KEY": "application-key-a",
    "POWEROFFICE_CLIENT_KEY": "client-key-b",
    "POWEROFFICE_SUBSCRIPTION_KEY": "subscription-key-c",
    "PMS_API_KEY": "pms-api-key-d",
    "TOLKEN_DASHBOARD_TOKEN": "dashboard-token-0123456789",
}


def test_init_writes_a_valid_starter_config(tmp_path: Path) -> None:
    """The written file validates against the config models."""
    target = tmp_path / "tolken.yaml"
    result = CliRunner().invoke(app, ["init", "--config", str(target)])
    assert result.exit_code == 0, result.output
    config = load_config(target, environ=ENV)
    assert config.sync.conflict_policy == "newest-wins"
    assert config.pms.api_key_value() == "pms-api-key-d"


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing file is kept unless --force is given."""
    target = tmp_path / "tolken.yaml"
    target.write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(app, ["init", "--config", str(target)])
    assert result.exit_code == 2
    assert target.read_text(encoding="utf-8") == "keep me"


def test_init_pms_rest_writes_a_starter_with_a_rest_section_that_loads(tmp_path: Path) -> None:
    """`tolken init --pms rest` writes a commented pms.rest starter that validates as written."""
    target = tmp_path / "tolken.yaml"
    result = CliRunner().invoke(app, ["init", "--config", str(target), "--pms", "rest"])
    assert result.exit_code == 0, result.output
    assert "check-pms --config" in result.output
    text = target.read_text(encoding="utf-8")
    assert "docs/pms-rest.md" in text
    config = load_config(target, environ=ENV)
    assert config.pms.connector == "rest"
    assert config.pms.rest is not None
    assert config.pms.rest.idempotency.reference_field == "external_ref"
    assert config.pms.change_capture == "polling"


def test_init_refuses_an_unknown_pms_kind(tmp_path: Path) -> None:
    """`--pms` other than pms or rest is a usage error and writes nothing."""
    target = tmp_path / "tolken.yaml"
    result = CliRunner().invoke(app, ["init", "--config", str(target), "--pms", "soap"])
    assert result.exit_code == 2
    assert not target.exists()
