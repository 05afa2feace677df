"""Dotted paths over nested dicts: read (case-insensitively), write, flatten, unflatten."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as AbcMapping
from typing import Any

__all__ = ["flatten", "get_parts", "get_path", "set_path", "unflatten"]


def _lookup(node: AbcMapping[str, Any], key: str) -> Any:
    if key in node:
        return node[key]
    # PowerOffice has been seen answering camelCase; read keys case-insensitively.
    folded = key.casefold()
    for name, value in node.items():
        if name.casefold() == folded:
            return value
    return None


def get_path(record: AbcMapping[str, Any], path: str) -> Any:
    """The value at dotted ``path``, or None when any part is missing or empty."""
    return get_parts(record, path.split("."))


def get_parts(record: AbcMapping[str, Any], parts: Iterable[str]) -> Any:
    """:func:`get_path` over a path already split at its dots (split once, read many)."""
    node: Any = record
    for part in parts:
        # A dict first: the ABC check costs more than the lookup (once per field per record).
        if type(node) is not dict and not isinstance(node, AbcMapping):
            return None
        node = node[part] if part in node else _lookup(node, part)
    return node


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set dotted ``path`` in ``target``, creating nested dicts on the way."""
    *parents, last = path.split(".")
    node = target
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def unflatten(flat: AbcMapping[str, Any]) -> dict[str, Any]:
    """``{"address.city": "Oslo"}`` -> ``{"address": {"city": "Oslo"}}``."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        set_path(out, path, value)
    return out


def flatten(record: AbcMapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """``{path: value}`` for each of ``paths`` (missing ones are None)."""
    return {path: get_path(record, path) for path in paths}
