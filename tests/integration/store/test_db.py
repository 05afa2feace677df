"""A SQLite store that cannot be opened is a config error naming its path and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tolken.errors import ConfigError
from tolken.store import open_store


def test_a_store_in_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    """store: sqlite:///missing/tolken.db says that folder does not exist."""
    path = tmp_path / "missing" / "tolken.db"
    with pytest.raises(ConfigError) as info:
        open_store(f"sqlite:///{path}")
    assert info.value.key == "store"
    assert info.value.message == (
        f"cannot open the SQLite store {path}: the folder {path.parent} does not exist"
    )


def test_a_store_that_is_not_a_database_names_the_file(tmp_path: Path) -> None:
    """A file that is not SQLite (or a folder) is refused naming it, not with a traceback."""
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"cannot open the SQLite store {text}: file is not a"):
        open_store(f"sqlite:///{text}")
    with pytest.raises(ConfigError, match=f"store {tmp_path}: it is a folder, not a file"):
        open_store(f"sqlite:///{tmp_path}")
