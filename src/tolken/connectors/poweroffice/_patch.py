"""JSON Patch documents for PowerOffice updates (pure).

PowerOffice updates are RFC 6902 JSON Patch limited to the fields of the
resource's PatchDto; nested address fields are addressed as
``/MailAddress/City``. Fields outside the PatchDto are refused here, before
anything is sent, so the user sees which field and why rather than a remote 400.
Every operation is a ``replace``: re-sending the same document is harmless,
which is what makes a PATCH safe to retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def build_patch(resource: str, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON Patch document setting every field in ``changes`` (keys in any casing).

    Nested mappings address nested objects (``{"MailAddress": {"City": "Oslo"}}``
    -> ``/MailAddress/City``). Raises :class:`~tolken.errors.ValidationFailed`
    naming the field when it is not in the resource's PatchDto.
    """
    spec = _schema.resource_spec(resource)
    ops: list[dict[str, Any]] = []
    for key, value in changes.items():
        field = canonical_key(key)
        if field not in spec.patch:
            raise _refuse(
                spec.name, field, f"not a field of {spec.patch_dto} (read-only or unknown)"
            )
        nested = _NESTED.get(field)
        if nested is None:
            if isinstance(value, Mapping):
                raise _refuse(spec.name, field, "is not an object; give it a plain value")
            ops.append({"op": "replace", "path": f"/{field}", "value": value})
            continue
        if not isinstance(value, Mapping):
            raise _refuse(spec.name, field, "give the changed address fields as a mapping")
        for sub_key, sub_value in value.items():
            sub = canonical_key(sub_key)
            if sub not in nested:
                raise _refuse(spec.name, f"{field}.{sub}", "not a field of ContactAddressPatchDto")
            ops.append({"op": "replace", "path": f"/{field}/{sub}", "value": sub_value})
    return ops


def field_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``after`` whose value differs from ``before`` (keys compared canonically).

    Nested mappings are compared field by field and yield nested changes, so
    the result feeds :func:`build_patch` directly. Fields absent from ``after``
    are not changes (a patch never removes a property).
    """
    old = {canonical_key(key): value for key, value in before.items()}
    diff: dict[str, Any] = {}
    for key, value in after.items():
        field = canonical_key(key)
        previous = old.get(field)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            nested = field_diff(previous, value)
            if nested:
                diff[field] = nested
        elif isinstance(value, Mapping):
            diff[field] = {canonical_key(k): v for k, v in value.items()}
        elif field not in old or previous != value:
            diff[field] = value
    return diff
