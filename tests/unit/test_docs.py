"""The README documents every CLI command and config key, and is kept current."""

from pathlib import Path

from tolken import _cli_reference
from tolken.config import (
    FlowSettings,
    PMSSettings,
    PowerOfficeSettings,
    ServeSettings,
    SyncSettings,
    TolkenConfig,
)

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_cli_reference_is_current() -> None:
    """The README's CLI reference equals what the CLI renders (run `make docs-cli`)."""
    start = README.index(_cli_reference.START)
    end = README.index(_cli_reference.END) + len(_cli_reference.END)
    assert README[start:end] == _cli_reference.render()


def test_every_config_key_is_in_the_readme() -> None:
    """Each tolken.yaml key appears in the README's configuration example."""
    models = [TolkenConfig, PowerOfficeSettings, PMSSettings, SyncSettings, FlowSettings]
    models.append(ServeSettings)
    for model in models:
        for key in model.model_fields:
            assert f"{key}:" in README, f"{model.__name__}.{key} is not documented"
