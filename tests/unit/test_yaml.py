"""Config and mapping files are bounded: size capped, aliases refused, each within a second."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

from tolken._yaml import MAX_FILE_BYTES, load_packaged_yaml, load_yaml
from tolken.config import load_config
from tolken.errors import ConfigError
from tolken.mapping import load_mapping
from tolken.mapping.load import DEFAULT_MAPPING_PATH

# Nine lists, each of nine aliases to the one before: 9**9 (387 million) strings
# once expanded, from 350 bytes of YAML ("billion laughs").
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def big_config(size: int) -> str:
    """A valid-looking tolken.yaml padded with comments to about ``size`` bytes."""
    head = (
        "poweroffice:\n  application_key: ${APP}\n  client_key: client-key-1\n"
        "  subscription_key: subscription-key-1\n"
        "pms:\n  base_url: http://127.0.0.1:1/api/v1\n  api_key: pms-api-key-1\n"
    )
    line = "# " + "x" * 77 + "\n"
    return head + line * (size // len(line))


def refused_quickly(load: object, path: Path) -> ConfigError:
    """The ConfigError ``load(path)`` raises, checked to come within a second."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load(path, **({"environ": {"APP": "application-key"}} if load is load_config else {}))  # type: ignore[operator]
    assert time.monotonic() - started < 1.0
    return info.value


@pytest.mark.parametrize("load", [load_config, load_mapping], ids=["config", "mapping"])
def test_a_yaml_bomb_is_refused_at_its_first_alias(tmp_path: Path, load: object) -> None:
    """A "billion laughs" file is refused within a second, naming the file, line and alias."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB, encoding="utf-8")
    error = refused_quickly(load, path)
    assert error.location == f"{path}:2"
    assert "aliases (*a) are not allowed" in str(error)


@pytest.mark.parametrize("megabytes", [5, 50])
@pytest.mark.parametrize("load", [load_config, load_mapping], ids=["config", "mapping"])
def test_a_file_over_the_cap_is_refused_unparsed(
    tmp_path: Path, load: object, megabytes: int
) -> None:
    """A 5 MB or 50 MB file is refused within a second, naming the file and the 256 KiB cap."""
    path = tmp_path / "huge.yaml"
    path.write_text(big_config(megabytes * 1_000_000), encoding="utf-8")
    error = refused_quickly(load, path)
    assert error.location == str(path)
    assert f"larger than {MAX_FILE_BYTES // 1024} KiB" in str(error)


def test_a_file_at_the_cap_is_read(tmp_path: Path) -> None:
    """A config of exactly the cap (256 KiB) still loads: the cap refuses only what is over it."""
    path = tmp_path / "tolken.yaml"
    text = big_config(MAX_FILE_BYTES - 200)
    path.write_text(text + "#" * (MAX_FILE_BYTES - len(text) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_FILE_BYTES
    config = load_config(path, environ={"APP": "application-key"})
    assert config.pms.api_key_value() == "pms-api-key-1"


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    """Thousands of nested brackets are refused within a second, not parsed for minutes."""
    path = tmp_path / "tolken.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    error = refused_quickly(load_config, path)
    assert "nested more than 64 levels deep" in str(error)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A binary file is refused naming the file, not with a UnicodeDecodeError traceback."""
    path = tmp_path / "tolken.yaml"
    path.write_bytes(b"store: \xff\xfe\n")
    error = refused_quickly(load_config, path)
    assert "not UTF-8" in str(error)


@pytest.mark.parametrize("load", [load_config, load_mapping])
def test_a_control_character_is_a_config_error_naming_the_line(
    tmp_path: Path, load: object
) -> None:
    """A control character YAML forbids is a ConfigError naming the line, not a crash."""
    path = tmp_path / "file.yaml"
    path.write_text("version: 1\nname: a\x1fb\n", encoding="utf-8")
    error = refused_quickly(load, path)
    assert "#x001f" in error.message
    assert error.location == f"{path}:2"


def test_a_missing_variable_in_a_scalar_document_is_a_config_error(tmp_path: Path) -> None:
    """A tolken.yaml that is only ``${UNSET}`` names the unset variable instead of crashing."""
    path = tmp_path / "tolken.yaml"
    path.write_text("${UNSET_FOR_THIS_TEST}\n", encoding="utf-8")
    error = refused_quickly(load_config, path)
    assert "UNSET_FOR_THIS_TEST is not set" in error.message


def test_a_mapping_as_a_key_is_a_config_error(tmp_path: Path) -> None:
    """``? {a: {b: 1}}`` as a key is refused with a ConfigError naming the line, not a TypeError."""
    path = tmp_path / "mapping.yaml"
    path.write_text("version: 1\n? {a: {b: 1}}\n: x\n", encoding="utf-8")
    error = refused_quickly(load_mapping, path)
    assert "a key must be a plain value" in error.message
    assert error.location == f"{path}:2"


def test_a_packaged_file_reads_as_plain_data_equal_to_the_checked_read() -> None:
    """tolken's own mapping file, read by the fast parser, is the same data as load_yaml's."""
    fast = load_packaged_yaml(DEFAULT_MAPPING_PATH)
    assert type(fast) is dict
    assert fast == load_yaml(DEFAULT_MAPPING_PATH)


@pytest.mark.parametrize("load", [load_config, load_mapping], ids=["config", "mapping"])
def test_an_anchor_named_twice_is_read_without_a_warning(tmp_path: Path, load: object) -> None:
    """No alias may use an anchor, so naming one twice is harmless: no warning, and the file
    is judged on its content (here: not a valid file, a ConfigError)."""
    path = tmp_path / "anchors.yaml"
    path.write_text("&0 : &0\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigError):
            load(path)  # type: ignore[operator]
