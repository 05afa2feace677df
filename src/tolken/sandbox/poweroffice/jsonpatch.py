"""JSON Patch (RFC 6902) limited to a resource's PatchDto (reference §3.4).

PowerOffice runs the ASP.NET Core JsonPatch engine over a ``<Entity>PatchDto``:

* paths are matched case-insensitively (``/phoneNumber``, ``/firstname``);
* only PatchDto properties exist; anything else (a read-only field such as
  ``/Id`` or ``/DepartmentCode``, or a typo) is a 400 titled
  ``<Entity> validation error(s)`` with detail
  ``<Entity>PatchDto: The target location specified by path segment '<segment
  in lower case>' was not found.``;
* values are converted to the property type (``"12345"`` → 12345);
* ``remove`` on a property sets it to null; on ``/ContactGroupIds/-`` it
  removes the last element, on ``/ContactGroupIds/0`` the first;
* nested address paths: ``/MailAddress/City``.

The patch runs on a copy; the caller stores the result only after the whole
document applied and the business rules passed, so a failed patch changes
nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from tolken.sandbox.poweroffice.dtos import ADDRESS, EntitySpec
from tolken.sandbox.poweroffice.problems import ApiError, validation_error
from tolken.sandbox.poweroffice.validation import ConversionError, coerce

__all__ = ["apply_patch", "patch_view"]

_OPS = ("add", "remove", "replace", "copy", "move", "test")


def patch_view(spec: EntitySpec, doc: dict[str, Any]) -> dict[str, Any]:
    """The PatchDto projection of a stored DTO (a deep copy)."""
    view = {field: copy.deepcopy(doc.get(field)) for field in spec.patch}
    if "MailAddress" in view:
        address = doc.get("MailAddress") or {}
        view["MailAddress"] = {field: address.get(field) for field in ADDRESS.patch}
    return view


def apply_patch(spec: EntitySpec, view: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply ``operations`` to ``view`` (from `patch_view`) and return the new view."""
    if not isinstance(operations, list):
        raise _error(spec, "The JSON patch document must be an array of operations.")
    target = copy.deepcopy(view)
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise _error(spec, f"Operation {index} is not a JSON object.")
        _apply_one(spec, target, {str(k).lower(): v for k, v in operation.items()})
    return target


def _error(spec: EntitySpec, detail: str) -> ApiError:
    return validation_error(spec.name, detail)


class _Location:
    """A resolved path: the container, the key in it, and the type code there."""

    def __init__(self, container: Any, key: Any, type_code: str, text: str) -> None:
        self.container = container
        self.key = key
        self.type_code = type_code
        self.text = text


def _segments(path: Any, spec: EntitySpec) -> list[str]:
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise _error(spec, f"The path '{path}' is not a valid JSON Pointer to a property.")
    return [s.replace("~1", "/").replace("~0", "~") for s in path[1:].split("/")]


def _not_found(spec: EntitySpec, segment: str) -> ApiError:
    return _error(
        spec,
        f"{spec.name}PatchDto: The target location specified by path segment "
        f"'{segment.lower()}' was not found.",
    )


def _resolve(spec: EntitySpec, target: dict[str, Any], path: Any) -> _Location:
    segments = _segments(path, spec)
    names = {name.lower(): name for name in spec.patch}
    field = names.get(segments[0].lower())
    if field is None:
        raise _not_found(spec, segments[0])
    type_code = spec.read.get(field, "str")
    if len(segments) == 1:
        return _Location(target, field, type_code, str(path))
    if type_code == "address" and len(segments) == 2:
        address_names = {name.lower(): name for name in ADDRESS.patch}
        sub = address_names.get(segments[1].lower())
        if sub is None:
            raise _not_found(spec, segments[1])
        if target[field] is None:
            target[field] = dict.fromkeys(ADDRESS.patch)
        return _Location(target[field], sub, "str", str(path))
    if type_code == "int[]" and len(segments) == 2:
        if target[field] is None:
            target[field] = []
        items: list[Any] = target[field]
        if segments[1] == "-":
            return _Location(items, "-", "int", str(path))
        if segments[1].isdigit():
            return _Location(items, int(segments[1]), "int", str(path))
    raise _not_found(spec, segments[-1])


def _convert(spec: EntitySpec, location: _Location, value: Any) -> Any:
    if location.type_code == "address":
        if value is None:
            return dict.fromkeys(ADDRESS.patch)
        if not isinstance(value, dict):
            raise _error(spec, f"The value '{value}' is invalid for target location.")
        names = {name.lower(): name for name in ADDRESS.patch}
        result: dict[str, Any] = dict.fromkeys(ADDRESS.patch)
        for key, item in value.items():
            name = names.get(str(key).lower())
            if name is None:
                raise _not_found(spec, str(key))
            result[name] = _coerce(spec, item, "str", location.text)
        return result
    return _coerce(spec, value, location.type_code, location.text)


def _coerce(spec: EntitySpec, value: Any, type_code: str, path: str) -> Any:
    try:
        return coerce(value, type_code, path.strip("/").replace("/", "."), lenient=True)
    except ConversionError:
        raise _error(
            spec, f"The value '{value}' is invalid for target location '{path.lower()}'."
        ) from None


def _read(spec: EntitySpec, location: _Location) -> Any:
    container, key = location.container, location.key
    if isinstance(container, list):
        index = len(container) - 1 if key == "-" else key
        if not 0 <= index < len(container):
            raise _error(
                spec, f"The index value provided by path segment '{key}' is out of bounds."
            )
        return container[index]
    return container[key]


def _add(spec: EntitySpec, location: _Location, value: Any) -> None:
    container, key = location.container, location.key
    if isinstance(container, list):
        if key == "-":
            container.append(value)
        elif 0 <= key <= len(container):
            container.insert(key, value)
        else:
            raise _error(
                spec, f"The index value provided by path segment '{key}' is out of bounds."
            )
    else:
        container[key] = value


def _remove(spec: EntitySpec, location: _Location) -> None:
    container, key = location.container, location.key
    if isinstance(container, list):
        _read(spec, location)  # bounds check
        container.pop(len(container) - 1 if key == "-" else key)
    elif location.type_code == "address":
        container[key] = dict.fromkeys(ADDRESS.patch)
    else:
        container[key] = None


def _apply_one(spec: EntitySpec, target: dict[str, Any], operation: dict[str, Any]) -> None:
    op = operation.get("op")
    if op not in _OPS:
        raise _error(spec, f"Invalid JsonPatch operation '{op}'.")
    location = _resolve(spec, target, operation.get("path"))
    if op in ("add", "replace", "test") and "value" not in operation:
        raise _error(spec, f"The '{op}' operation at path '{location.text}' needs a value.")
    if op == "test":
        expected = _convert(spec, location, operation["value"])
        actual = _read(spec, location)
        if actual != expected:
            raise _error(
                spec,
                f"The current value '{actual}' at path '{location.text}' is not equal "
                f"to the test value '{operation['value']}'.",
            )
    elif op == "add":
        _add(spec, location, _convert(spec, location, operation["value"]))
    elif op == "remove":
        _remove(spec, location)
    elif op == "replace":
        value = _convert(spec, location, operation["value"])
        if isinstance(location.container, list):
            _read(spec, location)
            index = len(location.container) - 1 if location.key == "-" else location.key
            location.container[index] = value
        else:
            location.container[location.key] = value
    else:  # copy / move
        source = _resolve(spec, target, operation.get("from"))
        value = copy.deepcopy(_read(spec, source))
        converted = _convert(spec, location, value)
        if op == "move":
            _remove(spec, source)
            location = _resolve(spec, target, operation.get("path"))
        _add(spec, location, converted)
