"""JSON Schemas of the mapping file and of tolken.yaml, for editor autocompletion.

``python -m tolken.mapping.schema [DIR]`` writes them (default ``docs/schema``);
a test fails when the committed files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from tolken.config import FleetConfig, TolkenConfig
from tolken.mapping.models import Mapping

__all__ = ["SCHEMA_FILES", "render_schemas", "write_schemas"]

# tolken.yaml is either mode: single (poweroffice.client_key) or fleet (a fleet: section).
SCHEMA_FILES: dict[str, Any] = {
    "mapping.schema.json": Mapping,
    "tolken.schema.json": TolkenConfig | FleetConfig,
}

_TITLES = {
    "mapping.schema.json": "tolken mapping file",
    "tolken.schema.json": "tolken.yaml",
}


def _schema(name: str, model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://tolken.invalid/schema/{name}",
    }
    schema.update(TypeAdapter(model).json_schema(mode="validation"))
    schema["title"] = _TITLES[name]
    return schema


def render_schemas() -> dict[str, str]:
    """File name -> JSON text of every exported schema."""
    return {
        name: json.dumps(_schema(name, model), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        for name, model in SCHEMA_FILES.items()
    }


def write_schemas(directory: Path) -> list[Path]:
    """Write the schemas into ``directory``; returns the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in render_schemas().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schema")
    for path in write_schemas(target):
        print(f"wrote {path}")
