"""`plan`, `docs` and `sync` refuse a mapping naming a field that does not exist, with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tolken.cli import app
from tolken.mapping.load import DEFAULT_MAPPING_PATH


@pytest.mark.parametrize(
    ("old", "new", "key", "says"),
    [
        (
            "{poweroffice: PhoneNumber, pms: phone",
            "{poweroffice: Phone, pms: phone",
            "flows.customers.properties.7.poweroffice",
            "PowerOffice Customers has no field 'Phone'",
        ),
        (
            "pms: phone, type: string",
            "pms: telephone, type: string",
            "flows.customers.properties.7.pms",
            "a PMS customers record has no field 'telephone'",
        ),
    ],
    ids=["poweroffice", "pms"],
)
@pytest.mark.usefixtures("quiet_logs")
def test_plan_docs_and_sync_exit_2_naming_file_line_and_field(
    tmp_path: Path, old: str, new: str, key: str, says: str
) -> None:
    """Each command exits 2 with one line: mapping file, line, key and the missing field."""
    text = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8").replace(old, new)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(text, encoding="utf-8")
    line = 1 + text[: text.index(new)].count("\n")
    config = tmp_path / "tolken.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'tolken.db'}\nmapping: mapping.yaml\n"
        "poweroffice:\n  application_key: application-key\n  client_key: client-key-1\n"
        "  subscription_key: subscription-key-1\n"
        "pms:\n  base_url: http://127.0.0.1:1/api/v1\n  api_key: pms-api-key-1\n",
        encoding="utf-8",
    )
    for command in (["plan"], ["docs"], ["sync", "--once"]):
        result = CliRunner().invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.startswith(f"error: {mapping.resolve()}:{line}: {key}: {says}")
