"""The reference PMS's ``pms.rest`` section, as the README shows it."""

from __future__ import annotations

from ruamel.yaml import YAML

from docstext import README, fenced
from tolken.config import RestSettings
from tolken.connectors.rest import reference_pms_rest


def test_the_readme_rest_example_is_the_reference_pms_section() -> None:
    """The README's ``pms.rest`` example is valid and describes the reference PMS exactly."""
    (block,) = [body for lang, body in fenced(README) if "\n  rest:\n" in body]
    section = YAML(typ="safe").load(block)["pms"]["rest"]
    assert RestSettings.model_validate(section) == reference_pms_rest("feed")
