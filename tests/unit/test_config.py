"""Config errors name the file, line and key; secrets come from the environment."""

from pathlib import Path

import pytest

from tolken.config import load_config
from tolken.errors import ConfigError

GOOD = """\
poweroffice:
  application_key: ${APP}
  client_key: client-key-1
  subscription_key: subscription-key-1
pms:
  base_url: http://127.0.0.1:1/api/v1
  api_key: pms-api-key-1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tolken.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_env_reference_is_expanded(tmp_path: Path) -> None:
    """${VAR} is replaced from the environment and kept secret in reprs."""
    config = load_config(write(tmp_path, GOOD), environ={"APP": "s3cret-app-key"})
    assert config.poweroffice.application_key.get_secret_value() == "s3cret-app-key"
    assert "s3cret-app-key" not in repr(config)
    assert "s3cret-app-key" in config.secrets()


def test_missing_env_var_names_key_and_line(tmp_path: Path) -> None:
    """An unset variable is reported with the line that references it."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD), environ={})
    assert str(info.value).endswith(
        "tolken.yaml:2: application_key: environment variable APP is not set"
    )


def test_unknown_key_is_rejected_with_line(tmp_path: Path) -> None:
    """A typo in a key is an error naming the line, not silently ignored."""
    text = GOOD + "sync:\n  interval_secnds: 5\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={"APP": "application-key"})
    assert info.value.location is not None
    assert info.value.location.endswith(":9")
    assert info.value.key == "sync.interval_secnds"


def test_bad_value_is_rejected(tmp_path: Path) -> None:
    """An unknown conflict policy is refused."""
    text = GOOD + "sync:\n  conflict_policy: coin-flip\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={"APP": "application-key"})
    assert info.value.key == "sync.conflict_policy"


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    """Broken YAML is reported with its line."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "pms: [\n  a: b\n"), environ={})
    assert info.value.location is not None
    assert ":" in info.value.location


def test_a_key_too_short_to_redact_is_refused(tmp_path: Path) -> None:
    """An API key under 8 characters is refused at load, naming its key and line."""
    text = GOOD.replace("api_key: pms-api-key-1", "api_key: ab1")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={"APP": "application-key"})
    assert info.value.key == "pms.api_key"
    assert str(info.value).startswith(f"{tmp_path / 'tolken.yaml'}:7: pms.api_key: ")
    assert "shorter than 8 characters" in str(info.value)
