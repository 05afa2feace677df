"""Random and mutated ``tolken.yaml`` and mapping text: only ConfigError, and quickly."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from fuzz.conftest import FUZZ
from tolken.config import load_config
from tolken.errors import ConfigError
from tolken.mapping import load_mapping
from tolken.mapping.load import DEFAULT_MAPPING_PATH

SECONDS_PER_EXAMPLE = 2.0

CONFIG = """\
store: sqlite:///tolken.db
poweroffice:
  application_key: ${PO_APPLICATION_KEY}
  client_key: client-key-1
  subscription_key: sub-key-1
  timeout_seconds: 30
pms:
  base_url: http://127.0.0.1:8080/api/v1
  api_key: pms-key-1
sync:
  interval_seconds: 60
  flows:
    projects: {enabled: true, create_in_poweroffice: false}
serve:
  token: dash-token-0123456789
  webhook_secret: &s hook-secret-0123456789
"""
ENVIRON = {"PO_APPLICATION_KEY": "app-key-1"}

# Pieces YAML parsers and our ${VAR} expansion treat specially.
_TOKENS = st.sampled_from(
    [
        "&a ", "*a", "<<: *a", "${PO_APPLICATION_KEY}", "${MISSING}", "${", "}",
        "!!python/object:os.system", "!!binary", "? ", ": ", "- ", "{", "}", "[", "]",
        "\n", "\n  ", "'", '"', "#", "|", ">", "---\n", "...\n", "%YAML 1.1\n",
        "\t", "\x00", "\ufeff", "~", "1e999", "0x1F", ".inf", "null",
    ]
)  # fmt: skip


def _mutated(base: str) -> st.SearchStrategy[str]:
    """``base`` with a few random slices replaced by YAML tokens or random text."""

    def apply(edits: list[tuple[int, int, str]]) -> str:
        text = base
        for start, length, piece in edits:
            at = start % (len(text) + 1)
            text = text[:at] + piece + text[at + length :]
        return text

    piece = _TOKENS | st.text(max_size=12)
    edit = st.tuples(st.integers(0, 10**6), st.integers(0, 8), piece)
    return st.lists(edit, min_size=1, max_size=6).map(apply)


def _texts(base: str) -> st.SearchStrategy[str]:
    return (
        st.text(max_size=200)
        | st.lists(_TOKENS | st.text(max_size=6), max_size=30).map("".join)
        | _mutated(base)
    )


def _write(folder: Path, text: str, name: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@FUZZ
@given(text=_texts(CONFIG))
def test_any_config_text_loads_or_is_a_config_error(tmp_path: Path, text: str) -> None:
    """A random or mutated tolken.yaml loads or raises ConfigError, within two seconds."""
    path = _write(tmp_path, text, "tolken.yaml")
    started = time.monotonic()
    with contextlib.suppress(ConfigError):
        load_config(path, environ=ENVIRON)
    assert time.monotonic() - started < SECONDS_PER_EXAMPLE


@FUZZ
@given(text=_texts(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")))
@example(text="&0 : &0")  # an anchor named twice: found by this test
def test_any_mapping_text_loads_or_is_a_config_error(tmp_path: Path, text: str) -> None:
    """A random or mutated mapping file loads or raises ConfigError, within two seconds."""
    path = _write(tmp_path, text, "mapping.yaml")
    started = time.monotonic()
    with contextlib.suppress(ConfigError):
        load_mapping(path)
    assert time.monotonic() - started < SECONDS_PER_EXAMPLE
