"""YAML loading that remembers where every key came from, for errors that name a line."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from tolken.errors import ConfigError

__all__ = ["expand_env", "load_yaml", "validate_model"]

M = TypeVar("M", bound=BaseModel)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_yaml(path: Path) -> Any:
    """Parse ``path`` keeping line information; YAML syntax errors name file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}", location=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", location=str(path)) from None
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"invalid YAML: {exc.problem}", location=where) from None


def expand_env(node: Any, path: Path, environ: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` in every string with the environment's value; a missing one is an error.

    Only whole-variable substitution, no expressions: config strings stay data.
    """
    env = os.environ if environ is None else environ
    if isinstance(node, CommentedMap):
        for key in list(node.keys()):
            try:
                node[key] = expand_env(node[key], path, environ)
            except _MissingVar as missing:
                line = node.lc.key(key)[0] + 1
                raise ConfigError(
                    f"environment variable {missing.name} is not set",
                    location=f"{path}:{line}",
                    key=str(key),
                ) from None
        return node
    if isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            node[i] = expand_env(item, path, environ)
        return node
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise _MissingVar(name)
            return env[name]

        return _ENV_REF.sub(sub, node)
    return node


class _MissingVar(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _line_of(root: Any, loc: Sequence[int | str]) -> int | None:
    """Line (1-based) of the deepest key in ``loc`` that exists in the parsed document."""
    node = root
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def validate_model(model: type[M], data: Any, path: Path) -> M:
    """Validate ``data`` into ``model``; the first error names file, line and key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        line = _line_of(data, loc)
        where = f"{path}:{line}" if line else str(path)
        key = ".".join(str(p) for p in loc) or None
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{err['msg']}{more}", location=where, key=key) from None
