"""The CLI refuses a hostile or huge tolken.yaml, or a store it cannot open, with exit 2."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tolken.cli import app

# Nine lists of nine aliases to the one before: 387 million strings once expanded.
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def big_config(size: int) -> str:
    """A tolken.yaml padded with comments to about ``size`` bytes."""
    head = "pms:\n  base_url: http://127.0.0.1:1/api/v1\n  api_key: pms-api-key-1\n"
    return head + ("# " + "x" * 77 + "\n") * (size // 80)


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("bomb", BOMB, "aliases (*a) are not allowed"),
        ("5mb", big_config(5_000_000), "larger than 256 KiB"),
        ("50mb", big_config(50_000_000), "larger than 256 KiB"),
    ],
    ids=["bomb", "5mb", "50mb"],
)
def test_sync_refuses_the_file_with_exit_2_in_a_second(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    """A YAML bomb, a 5 MB and a 50 MB config each exit 2 within a second, naming the file."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    result = CliRunner().invoke(app, ["sync", "--config", str(path), "--once"])
    assert time.monotonic() - started < 1.0
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert says in result.stderr


@pytest.mark.usefixtures("quiet_logs")
def test_a_store_path_that_cannot_be_opened_exits_2_naming_it(
    tmp_path: Path,
) -> None:
    """`sync --once` with a store in a missing folder exits 2 with one line naming the path."""
    store = tmp_path / "no-such-folder" / "tolken.db"
    config = tmp_path / "tolken.yaml"
    config.write_text(
        f"store: sqlite:///{store}\n"
        "poweroffice:\n  application_key: application-key\n  client_key: client-key-1\n"
        "  subscription_key: subscription-key-1\n"
        "pms:\n  base_url: http://127.0.0.1:1/api/v1\n  api_key: pms-api-key-1\n",
        encoding="utf-8",
    )
    for command in (["sync", "--once"], ["status"]):
        result = CliRunner().invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 2
        assert result.stderr == (
            f"error: store: cannot open the SQLite store {store}: "
            f"the folder {store.parent} does not exist\n"
        )
