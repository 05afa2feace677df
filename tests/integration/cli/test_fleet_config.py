"""The CLI given a fleet config with a bad secret_key or store exits 2 and says why."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tolken.cli import app

FLEET = """\
store: {store}
poweroffice:
  application_key: application-key
  subscription_key: subscription-key
pms:
  base_url: http://127.0.0.1:1/api/v1
fleet:
  secret_key: ${{TOLKEN_SECRET_KEY}}
"""
POSTGRESQL = "postgresql+psycopg://tolken:tolken@127.0.0.1:1/tolken"


@pytest.mark.parametrize(
    ("store", "secret_key", "message"),
    [
        (POSTGRESQL, "too-short-a-passphrase", "fleet.secret_key: must be at least 32 characters"),
        ("sqlite:///tolken.db", "x" * 32, "fleet mode needs a PostgreSQL store"),
    ],
)
def test_a_bad_fleet_config_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, secret_key: str, message: str
) -> None:
    """A short fleet.secret_key, or a SQLite store in fleet mode, stops the CLI with exit 2."""
    path = tmp_path / "tolken.yaml"
    path.write_text(FLEET.format(store=store), encoding="utf-8")
    monkeypatch.setenv("TOLKEN_SECRET_KEY", secret_key)
    result = CliRunner().invoke(app, ["status", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert secret_key not in result.output
