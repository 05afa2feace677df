"""The exported JSON Schemas (docs/schema) are current and accept the files tolken accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tolken._starter import STARTER_CONFIG
from tolken._yaml import load_yaml
from tolken.mapping.load import DEFAULT_MAPPING_PATH
from tolken.mapping.schema import SCHEMA_FILES, render_schemas, write_schemas

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "docs" / "schema"


def plain(node: Any) -> Any:
    """YAML as JSON would see it (mapping keys become strings)."""
    return json.loads(json.dumps(node))


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_committed_schema_is_current(name: str) -> None:
    """docs/schema matches the models; regenerate with `python -m tolken.mapping.schema`."""
    committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert committed == render_schemas()[name], f"{name} is stale"


def test_default_mapping_validates_against_schema() -> None:
    """Editors using the mapping schema accept the built-in mapping."""
    schema = json.loads(render_schemas()["mapping.schema.json"])
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(plain(load_yaml(DEFAULT_MAPPING_PATH)), schema)


def test_schema_flags_a_misspelt_key() -> None:
    """The mapping schema rejects what the loader rejects: an unknown key in a property."""
    schema = json.loads(render_schemas()["mapping.schema.json"])
    data = plain(load_yaml(DEFAULT_MAPPING_PATH))
    data["flows"]["projects"]["properties"][0]["pms_path"] = "code"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_starter_config_validates_against_schema(tmp_path: Path) -> None:
    """The tolken.yaml schema accepts the starter config `tolken init` writes."""
    schema = json.loads(render_schemas()["tolken.schema.json"])
    path = tmp_path / "tolken.yaml"
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    jsonschema.validate(plain(load_yaml(path)), schema)


def test_write_schemas_reports_changes(tmp_path: Path) -> None:
    """Regenerating writes both files once and then reports nothing to change."""
    assert {p.name for p in write_schemas(tmp_path)} == set(SCHEMA_FILES)
    assert write_schemas(tmp_path) == []


def test_fleet_config_validates_against_schema() -> None:
    """The tolken.yaml schema accepts a fleet config and refuses one that also has a client_key."""
    schema = json.loads(render_schemas()["tolken.schema.json"])
    poweroffice = {"application_key": "application-key", "subscription_key": "subscription-key"}
    fleet = {
        "store": "postgresql+psycopg://tolken:pw@db:5432/tolken",
        "poweroffice": poweroffice,
        "pms": {"base_url": "https://pms.example.com/api/v1"},
        "fleet": {"secret_key": "x" * 32, "concurrency": 8},
    }
    jsonschema.validate(fleet, schema)
    poweroffice["client_key"] = "client-key"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(fleet, schema)
