"""Reading request bodies and checking the business rules (reference §3.3, §5–7).

Two conversion modes mirror the two JSON stacks behind the real API:

* POST bodies are read like ASP.NET Core's ``System.Text.Json`` with web
  defaults: property names case-insensitive, unknown properties ignored
  (reference §3.3), numbers may arrive as numeric strings, but a string is never
  a boolean and a number never a string. A wrong type is a 400 and nothing is
  stored.
* JSON Patch values go through Newtonsoft-style conversion (reference §3.4):
  ``"12345"`` becomes an integer, ``"true"`` a boolean, numbers become strings
  for string fields.

Enum values match member names case-insensitively (``"print"`` → ``Print``)
or the member's position. Date-only fields accept ``YYYY-MM-DD`` with an
optional time part, which is dropped.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any

from tolken.sandbox.poweroffice.dtos import ADDRESS, ENUMS, EntitySpec
from tolken.sandbox.poweroffice.problems import ApiError, validation_error

__all__ = ["coerce", "parse_post_body", "validate_rules"]

_INT64 = (-(2**63), 2**63 - 1)
_NET_TYPES = {
    "int": "System.Int64",
    "float": "System.Double",
    "bool": "System.Boolean",
    "str": "System.String",
    "date": "System.DateOnly",
    "uuid": "System.Guid",
    "int[]": "System.Collections.Generic.List`1[System.Int64]",
}
_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?([eE][+-]?\d+)?\s*$")


class ConversionError(ValueError):
    """A value that does not convert to the field's type."""


def _fail(type_code: str, path: str) -> ConversionError:
    net = _NET_TYPES.get(type_code, "System.String")
    if type_code.startswith("enum:"):
        net = f"PowerOffice.{type_code[5:]}"
    return ConversionError(f"The JSON value could not be converted to {net}. Path: $.{path}.")


def coerce(value: Any, type_code: str, path: str, *, lenient: bool) -> Any:
    """``value`` converted to ``type_code`` (see `dtos`); ConversionError if impossible."""
    if value is None:
        return None
    if type_code == "int":
        return _to_int(value, type_code, path, lenient)
    if type_code == "float":
        return _to_float(value, path)
    if type_code == "bool":
        return _to_bool(value, path, lenient)
    if type_code == "str":
        return _to_str(value, path, lenient)
    if type_code == "date":
        return _to_date(value, path)
    if type_code == "uuid":
        return _to_uuid(value, path)
    if type_code == "int[]":
        if not isinstance(value, list):
            raise _fail(type_code, path)
        return [_to_int(item, "int", f"{path}[{i}]", lenient) for i, item in enumerate(value)]
    if type_code.startswith("enum:"):
        return _to_enum(value, type_code, path)
    raise _fail(type_code, path)


def _to_float(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise _fail("float", path)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    raise _fail("float", path)


def _to_bool(value: Any, path: str, lenient: bool) -> bool:
    if isinstance(value, bool):
        return value
    if lenient and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail("bool", path)


def _to_str(value: Any, path: str, lenient: bool) -> str:
    if isinstance(value, str):
        return value
    if lenient and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _fail("str", path)


def _to_uuid(value: Any, path: str) -> str:
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) else _raise("uuid", path)
    except ValueError:
        raise _fail("uuid", path) from None


def _raise(type_code: str, path: str) -> Any:
    raise _fail(type_code, path)


def _to_int(value: Any, type_code: str, path: str, lenient: bool) -> int:
    if isinstance(value, bool):
        raise _fail(type_code, path)
    integral_float = isinstance(value, float) and lenient and value.is_integer()
    numeric_text = isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value)
    if not (isinstance(value, int) or integral_float or numeric_text):
        raise _fail(type_code, path)
    result = int(value)
    if not _INT64[0] <= result <= _INT64[1]:
        raise _fail(type_code, path)
    return result


def _to_date(value: Any, path: str) -> str:
    match = _DATE.match(value) if isinstance(value, str) else None
    if not match:
        raise _fail("date", path)
    try:
        return date(int(match[1]), int(match[2]), int(match[3])).isoformat()
    except ValueError:
        raise _fail("date", path) from None


def _to_enum(value: Any, type_code: str, path: str) -> str:
    members = ENUMS[type_code[5:]]
    if isinstance(value, str):
        for member in members:
            if member.lower() == value.strip().lower():
                return member
        if value.strip().isdigit():
            value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(members):
        return members[value]
    raise _fail(type_code, path)


def parse_post_body(spec: EntitySpec, body: Any) -> dict[str, Any]:
    """POST body -> {canonical field: converted value}; unknown keys ignored."""
    if not isinstance(body, dict):
        raise _body_error(f"The JSON value could not be converted to {spec.name}PostDto. Path: $.")
    names = {name.lower(): name for name in spec.post}
    result: dict[str, Any] = {}
    try:
        for key, value in body.items():
            name = names.get(str(key).lower())
            if name is None:
                continue
            type_code = spec.post_type(name)
            if type_code == "address":
                result[name] = _parse_address(value, name)
            else:
                result[name] = coerce(value, type_code, name, lenient=False)
    except ConversionError as exc:
        raise _body_error(str(exc)) from None
    return result


def _parse_address(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConversionError(
            f"The JSON value could not be converted to ContactAddressPostDto. Path: $.{path}."
        )
    names = {name.lower(): name for name in ADDRESS.post}
    result: dict[str, Any] = {}
    for key, item in value.items():
        name = names.get(str(key).lower())
        if name is not None:
            result[name] = coerce(item, "str", f"{path}.{name}", lenient=False)
    return result


def _body_error(detail: str) -> ApiError:
    """ASP.NET Core's automatic model-binding 400 (a ValidationProblemDetails)."""
    field = detail.rsplit("Path: ", 1)[-1].rstrip(".") if "Path: " in detail else "$"
    return ApiError(
        400,
        "One or more validation errors occurred.",
        detail,
        extra={"errors": {field: [detail]}},
    )


def malformed_json(detail: str) -> ApiError:
    """400 for a body that is not JSON at all."""
    return _body_error(f"The request body is not valid JSON: {detail} Path: $.")


def validate_rules(spec: EntitySpec, doc: dict[str, Any], *, creating: bool) -> None:
    """Field rules of the resource on the complete (merged) DTO; 400 listing the failures.

    City and ZipCode are required only when an address is *posted*
    (``ContactAddressPostDto``); the PatchDto marks nothing required.
    """
    errors: list[str] = []
    for field, limit in spec.max_length.items():
        value = doc.get(field)
        if isinstance(value, str) and len(value) > limit:
            errors.append(f"{field} must be at most {limit} characters long.")
    if spec.name == "Department":
        if not (doc.get("Name") or "").strip():
            errors.append("Name is required.")
    elif spec.name == "Customer":
        errors.extend(_customer_errors(doc, creating))
    elif spec.name == "Project":
        errors.extend(_project_errors(doc))
    if errors:
        raise validation_error(spec.name, " ".join(errors))


def _customer_errors(doc: dict[str, Any], creating: bool) -> list[str]:
    errors: list[str] = []
    if doc.get("IsPerson"):
        if not (doc.get("FirstName") or "").strip() or not (doc.get("LastName") or "").strip():
            errors.append("FirstName and LastName are required when IsPerson is true.")
    elif not (doc.get("Name") or "").strip():
        errors.append("Name is required when IsPerson is false.")
    allowance = doc.get("Allowance")
    if allowance is not None and not -1000 <= allowance <= 100:
        errors.append("Allowance must be between -1000 and 100.")
    rate = doc.get("BillableRate")
    if rate is not None and rate <= 0:
        errors.append("BillableRate must be a positive number.")
    if doc.get("Number") is not None and doc["Number"] <= 0:
        errors.append("Number must be a positive number.")
    address = doc.get("MailAddress") or {}
    for field, limit in ADDRESS.max_length.items():
        value = address.get(field)
        if isinstance(value, str) and len(value) > limit:
            errors.append(f"MailAddress.{field} must be at most {limit} characters long.")
    filled = any(address.get(f) for f in ("AddressLine1", "AddressLine2", "City", "ZipCode"))
    if creating and filled and (not address.get("City") or not address.get("ZipCode")):
        errors.append("MailAddress: City and ZipCode are required when an address is given.")
    country = address.get("CountryCode")
    if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
        errors.append("MailAddress.CountryCode must be an ISO 3166-1 alpha-2 code.")
    return errors


def _project_errors(doc: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    if not (doc.get("Name") or "").strip():
        errors.append("Name is required.")
    progress = doc.get("Progress")
    if progress is not None and not 0 <= progress <= 100:
        errors.append("Progress must be between 0 and 100.")
    rate = doc.get("BillableRate")
    if rate is not None and rate <= 0:
        errors.append("BillableRate must be a positive number.")
    factor = doc.get("ExpenseMarkupFactor")
    if factor is not None and factor < 0:
        errors.append("ExpenseMarkupFactor must be zero or positive.")
    start, end = doc.get("StartDate"), doc.get("EndDate")
    if start and end and end < start:
        errors.append("EndDate cannot be before StartDate.")
    return errors


def check_project_code(code: str | None) -> None:
    """``.`` separates parent and sub-project codes, so it is refused (reference §7)."""
    if code is not None and "." in code:
        raise validation_error(
            "Project", f"Code '{code}' is invalid: '.' is reserved for sub-project codes."
        )
