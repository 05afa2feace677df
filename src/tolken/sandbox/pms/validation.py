"""Pure validation and JSON Merge Patch for PMS records; no I/O here.

POST and PATCH share one path: the request body is merge-patched onto the
current writable fields (``{}`` for a create), then :func:`normalize` fills
defaults and reports every field-level problem at once. References
(``customer_id``/``department_id``) need the database, so the store checks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from tolken.sandbox.pms.schema import (
    ADDRESS_FIELDS,
    FIELDS,
    READ_ONLY_FIELDS,
    FieldSpec,
    ResourceType,
    empty_address,
)

MAX_STRING = 1000
#: The rules the OpenAPI document states (``openapi.py``) and the checks here share.
#: White space is spelt out: ``\s`` differs between Python and the ECMA regexes of JSON Schema.
BLANK = " \t\n\r\f\v"
EMAIL_PATTERN = r"^[^@ \t\n\r\f\v]+@[^@ \t\n\r\f\v]+\.[^@ \t\n\r\f\v.]+$"
URL_PATTERN = r"^https?://[^ \t\n\r\f\v/]+"
NAME_PATTERN = r"[^ \t\n\r\f\v]"
_EMAIL = re.compile(EMAIL_PATTERN)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class FieldProblem:
    """One entry of a 422 body: ``{"field": ..., "message": ...}``."""

    field: str
    message: str

    def as_json(self) -> dict[str, str]:
        """The wire shape."""
        return {"field": self.field, "message": self.message}


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON Merge Patch and return the result (inputs untouched)."""
    if not isinstance(patch, dict):
        return patch
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def normalize(
    resource: ResourceType, doc: dict[str, Any]
) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Fill defaults into a merged document and list every problem with it.

    A removed (``null``) field falls back to its default: ``active`` to true,
    ``billable`` to false, ``status`` to planned, ``address`` to all lines
    unset, everything else to ``null``; a required field cannot be removed.
    """
    specs = FIELDS[resource]
    known = {spec.name for spec in specs}
    problems: list[FieldProblem] = []
    for key in doc:
        if key in READ_ONLY_FIELDS:
            problems.append(FieldProblem(key, "is read-only"))
        elif key not in known:
            problems.append(FieldProblem(key, "unknown field"))
    out: dict[str, Any] = {}
    for spec in specs:
        value = doc.get(spec.name)
        if spec.type == "address":
            out[spec.name], found = _address(value)
            problems.extend(found)
            continue
        if value is None:
            value = spec.default
        if spec.type == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)  # 82.0 is the integer 82 in JSON (and JSON Schema)
        out[spec.name] = value
        problem = _check(spec, value)
        if problem:
            problems.append(FieldProblem(spec.name, problem))
    if resource == "project":
        start, end = out.get("start_date"), out.get("end_date")
        if (
            isinstance(start, str)
            and isinstance(end, str)
            and _is_date(start)
            and _is_date(end)
            and end < start
        ):
            problems.append(FieldProblem("end_date", "must not be before start_date"))
    return out, problems


def _check(spec: FieldSpec, value: Any) -> str | None:
    if value is None:
        return "is required" if spec.required else None
    if spec.type in ("string", "reference"):
        return _check_string(spec, value)
    if spec.type == "enum":
        if not isinstance(value, str) or value not in spec.choices:
            return "must be one of: " + ", ".join(spec.choices)
        return None
    if spec.type == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if spec.type == "integer":
        # bool is an int subclass in Python but not an integer in JSON.
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        if spec.name == "progress" and not 0 <= value <= 100:
            return "must be between 0 and 100"
        return None
    if spec.type == "date":
        return None if _is_date(value) else "must be a date (YYYY-MM-DD)"
    raise AssertionError(f"unhandled field type {spec.type}")


def _check_string(spec: FieldSpec, value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > MAX_STRING:
        return f"must be at most {MAX_STRING} characters"
    if spec.required and not value.strip(BLANK):
        return "is required"
    if spec.name == "email" and not _EMAIL.match(value):
        return "must be an e-mail address"
    return None


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _address(value: Any) -> tuple[dict[str, Any], list[FieldProblem]]:
    address = empty_address()
    if value is None:
        return address, []
    if not isinstance(value, dict):
        return address, [FieldProblem("address", "must be an object")]
    problems: list[FieldProblem] = []
    for key, line in value.items():
        field = f"address.{key}"
        if key not in ADDRESS_FIELDS:
            problems.append(FieldProblem(field, "unknown field"))
        elif line is not None and not isinstance(line, str):
            problems.append(FieldProblem(field, "must be a string"))
        elif isinstance(line, str) and len(line) > MAX_STRING:
            problems.append(FieldProblem(field, f"must be at most {MAX_STRING} characters"))
        else:
            address[key] = line
    return address, problems


class ApiError(Exception):
    """A request the PMS refuses: status code, field problems, optional extras."""

    def __init__(
        self,
        status: int,
        problems: list[FieldProblem],
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.status = status
        self.problems = problems
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        """The JSON error body: ``{"errors": [...]}`` plus any extras."""
        return {"errors": [p.as_json() for p in self.problems], **self.extra}
