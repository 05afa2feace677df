"""Load a mapping file (or the built-in default) into validated models."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tolken._yaml import expand_env, load_yaml, validate_model
from tolken.errors import ConfigError
from tolken.mapping.models import Mapping

__all__ = ["DEFAULT_MAPPING_PATH", "default_mapping", "load_mapping", "mapping_path_from_config"]

DEFAULT_MAPPING_PATH = Path(__file__).with_name("default.yaml")


def load_mapping(path: Path | str | None = None) -> Mapping:
    """The mapping in ``path``, or the built-in default for None.

    A bad file raises :class:`~tolken.errors.ConfigError` naming the file, line and reason.
    """
    if path is None:
        return default_mapping()
    return _load(Path(path))


@cache
def default_mapping() -> Mapping:
    """The built-in mapping of DESIGN §3 (parsed once)."""
    return _load(DEFAULT_MAPPING_PATH)


def _load(path: Path) -> Mapping:
    data = load_yaml(path)
    if data is None:
        raise ConfigError("the mapping file is empty", location=str(path))
    return validate_model(Mapping, data, path)


def mapping_path_from_config(config_path: Path) -> Path | None:
    """Only the ``mapping:`` key of a tolken.yaml, resolved against the config's folder.

    For commands that need the mapping but no connection (``tolken docs``), so
    that secrets missing from the environment do not get in the way.
    """
    data = load_yaml(config_path)
    if data is None or not hasattr(data, "get"):
        raise ConfigError("expected a mapping of settings", location=str(config_path))
    if data.get("mapping") is None:
        return None
    value = expand_env({"mapping": data["mapping"]}, config_path)["mapping"]
    if not isinstance(value, str) or not value:
        line = data.lc.key("mapping")[0] + 1
        raise ConfigError(
            "expected the path of a mapping file", location=f"{config_path}:{line}", key="mapping"
        )
    mapping = Path(value)
    return mapping if mapping.is_absolute() else (config_path.parent / mapping).resolve()
