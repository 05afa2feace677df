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
