"""Field paths for connector writes: what ``create`` and ``update`` receive, and the nesting back.

Writes reach a connector as flat dotted field paths in the remote system's
own spelling: ``{"MailAddress.City": "Oslo", "Name": "Acme"}`` for
PowerOffice, ``{"address.city": "Oslo", "name": "Acme"}`` for a PMS. Each
connector builds its wire body from them: :func:`nest` gives the nested JSON
object a POST body or a JSON Merge Patch needs, :func:`field_paths` the flat
paths a JSON Patch addresses. A mapping value is read as the paths of its
leaves (``{"address": {"city": "Oslo"}}`` is ``{"address.city": "Oslo"}``), so
a caller holding a nested record may pass it as it is. Custom connectors may
use these functions too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["field_paths", "nest"]


def field_paths(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``{dotted path: value}``, the leaves of any mapping value spelled out as paths.

    An empty mapping has no leaves and so names no field.
    """
    out: dict[str, Any] = {}
    for path, value in changes.items():
        if isinstance(value, Mapping):
            for sub, leaf in field_paths(value).items():
                out[f"{path}.{sub}"] = leaf
        else:
            out[path] = value
    return out


def nest(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The nested JSON object for flat dotted paths: ``{"a.b": 1}`` -> ``{"a": {"b": 1}}``.

    Keys keep the order in which they first appear; mapping values merge into
    the object at their path (copied, never changed in place); an empty one
    stays an empty object.
    """
    out: dict[str, Any] = {}
    _merge(out, changes)
    return out


def _merge(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = target
        for part in parents:
            node = _child(node, part)
        if isinstance(value, Mapping):
            _merge(_child(node, last), value)
        else:
            node[last] = value


def _child(node: dict[str, Any], key: str) -> dict[str, Any]:
    """The object under ``key``, made (in place of any plain value) when there is none."""
    child = node.get(key)
    if not isinstance(child, dict):
        child = node[key] = {}
    return child
