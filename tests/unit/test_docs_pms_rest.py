"""docs/pms-rest.md: the worked example is the tests' config, and every pms.rest option is there."""

from __future__ import annotations

import re

from pydantic import BaseModel

from docstext import DOCS, ROOT, section
from tolken.config import (
    RestAuth,
    RestBody,
    RestChanges,
    RestErrors,
    RestIdempotency,
    RestIdentity,
    RestPaging,
    RestResource,
    RestSettings,
)
from tolken.conformance import CONNECTOR_RULES

PAGE = DOCS["pms-rest.md"]
EXAMPLE = ROOT / "docs" / "examples" / "json-server"


def test_the_worked_example_shows_the_files_the_tests_run_with() -> None:
    """The pms: section, mapping and middleware on the page are the files tests use, verbatim."""
    for name in ("pms.yaml", "mapping.yaml", "pms-middleware.js"):
        text = (EXAMPLE / name).read_text(encoding="utf-8")
        assert f"\n{text}```" in PAGE, f"docs/pms-rest.md does not show {name} as it is"


def test_every_pms_rest_option_is_explained() -> None:
    """Each key of the pms.rest section appears, as code, in docs/pms-rest.md."""
    models: list[type[BaseModel]] = [RestSettings, RestAuth, RestResource, RestBody]
    models += [RestIdentity, RestPaging, RestChanges, RestIdempotency, RestErrors]
    spans = set(re.findall(r"`([\w.-]+)`", PAGE))
    for model in models:
        for key in model.model_fields:
            assert key in spans, f"{model.__name__}.{key} is not in docs/pms-rest.md"


def test_the_configured_check_rules_match_the_registry() -> None:
    """The page lists every `check-pms --config` rule, in the order they run."""
    table = section(PAGE, "## Checking it: `tolken check-pms --config`")
    assert re.findall(r"^\| `([\w-]+)` \|", table, re.M) == list(CONNECTOR_RULES)
