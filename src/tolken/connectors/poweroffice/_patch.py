"""JSON Patch documents for PowerOffice updates (pure).

PowerOffice updates are RFC 6902 JSON Patch limited to the fields of the
resource's PatchDto. Changes arrive as flat field paths (``Name``,
``MailAddress.City``) and each becomes one operation on the same path
(``/Name``, ``/MailAddress/City``). Fields outside the PatchDto are refused
here, before anything is sent, so the user sees which field and why rather
than a remote 400. Every operation is a ``replace`` (``None`` clears the
field): re-sending the same document is harmless, which is what makes a PATCH
safe to retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tolken.connectors.fields import field_paths
from tolken.connectors.poweroffice import _schema
from tolken.connectors.poweroffice._records import canonical_key
from tolken.errors import FieldError, ValidationFailed

__all__ = ["build_patch", "field_diff"]

_NESTED: dict[str, frozenset[str]] = {"MailAddress": _schema.ADDRESS_PATCH}


def _refuse(resource: str, field: str, reason: str) -> ValidationFailed:
    return ValidationFailed(
        f"cannot update {resource}.{field}: {reason}",
        system="poweroffice",
        field_errors=[FieldError(field, reason)],
    )


def _pointer(spec: _schema.ResourceSpec, path: str) -> tuple[str, str]:
    """``(top-level field, JSON Pointer)`` of a field path; refuses what the PatchDto lacks."""
    field, *rest = path.split(".")
    field = canonical_key(field)
    if field not in spec.patch:
        raise _refuse(spec.name, field, f"not a field of {spec.patch_dto} (read-only or unknown)")
    nested = _NESTED.get(field)
    if nested is None:
        if rest:
            raise _refuse(spec.name, field, "is not an object; give it a plain value")
        return field, f"/{field}"
    if len(rest) != 1:
        raise _refuse(spec.name, field, f"is an object; give its fields as paths like {field}.City")
    sub = canonical_key(rest[0])
    if sub not in nested:
        raise _refuse(spec.name, f"{field}.{sub}", "not a field of ContactAddressPatchDto")
    return field, f"/{field}/{sub}"


def build_patch(resource: str, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON Patch document setting every field path in ``changes`` (any casing).

    ``{"Name": "Acme", "MailAddress.City": "Oslo"}`` -> replace ``/Name`` and
    ``/MailAddress/City``; a mapping value stands for the paths of its fields.
    Operations on one object stay together, in the order its first field was
    given. Raises :class:`~tolken.errors.ValidationFailed` naming the field when
    it is not in the resource's PatchDto.
    """
    spec = _schema.resource_spec(resource)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for path, value in field_paths(changes).items():
        field, pointer = _pointer(spec, path)
        grouped.setdefault(field, []).append({"op": "replace", "path": pointer, "value": value})
    return [op for ops in grouped.values() for op in ops]


def field_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The field paths of ``after`` whose value differs from ``before`` (keys compared canonically).

    Nested objects are compared field by field and yield paths such as
    ``MailAddress.ZipCode``, so the result feeds :func:`build_patch` directly.
    Fields absent from ``after`` are not changes (a patch never removes a property).
    """
    old = {_canonical_path(path): value for path, value in field_paths(before).items()}
    diff: dict[str, Any] = {}
    for path, value in field_paths(after).items():
        key = _canonical_path(path)
        if key not in old or old[key] != value:
            diff[key] = value
    return diff


def _canonical_path(path: str) -> str:
    return ".".join(canonical_key(part) for part in path.split("."))
