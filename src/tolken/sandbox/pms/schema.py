"""The record shapes of the PMS contract (DESIGN §2): fields, enums, defaults.

One table per resource drives validation, defaults and the OpenAPI document,
so the three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ResourceType = Literal["customer", "project"]

CUSTOMER_KINDS = ("company", "person", "department")
PROJECT_STATUSES = ("planned", "active", "completed", "archived", "tentative")
ADDRESS_FIELDS = ("line1", "line2", "postal_code", "city", "country")

# Assigned by the server; a client may not write them.
READ_ONLY_FIELDS = ("id", "version", "created_at", "updated_at")


@dataclass(frozen=True)
class FieldSpec:
    """One writable field: its type, whether it may be absent, and its default."""

    name: str
    type: Literal["string", "boolean", "integer", "date", "enum", "reference", "address"]
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    description: str = ""


CUSTOMER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("kind", "enum", required=True, choices=CUSTOMER_KINDS),
    FieldSpec("number", "string", description="customer number / department code"),
    FieldSpec("name", "string", required=True),
    FieldSpec("first_name", "string"),
    FieldSpec("last_name", "string"),
    FieldSpec("organization_number", "string"),
    FieldSpec("email", "string", description="an e-mail address"),
    FieldSpec("phone", "string"),
    FieldSpec("website", "string"),
    FieldSpec("address", "address"),
    FieldSpec("active", "boolean", default=True, description="false = archived / inactive"),
    FieldSpec("external_ref", "string", description="tolken stores the PowerOffice id here"),
)

PROJECT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("code", "string"),
    FieldSpec("name", "string", required=True),
    FieldSpec("customer_id", "reference", description="id of a PMS customer"),
    FieldSpec(
        "department_id", "reference", description="id of a PMS customer with kind department"
    ),
    FieldSpec("start_date", "date"),
    FieldSpec("end_date", "date", description="not before start_date"),
    FieldSpec("status", "enum", default="planned", choices=PROJECT_STATUSES),
    FieldSpec("billable", "boolean", default=False),
    FieldSpec("progress", "integer", description="0 to 100"),
    FieldSpec("active", "boolean", default=True),
    FieldSpec("external_ref", "string", description="tolken stores the PowerOffice id here"),
)

FIELDS: dict[ResourceType, tuple[FieldSpec, ...]] = {
    "customer": CUSTOMER_FIELDS,
    "project": PROJECT_FIELDS,
}

# URL collection name <-> changes-feed type.
COLLECTIONS: dict[str, ResourceType] = {"customers": "customer", "projects": "project"}
ID_PREFIX: dict[ResourceType, str] = {"customer": "cus_", "project": "prj_"}


def empty_address() -> dict[str, Any]:
    """An address with every line unset (the shape is always complete)."""
    return dict.fromkeys(ADDRESS_FIELDS)


def defaults(resource: ResourceType) -> dict[str, Any]:
    """The writable fields of a new record before the client's values apply."""
    out: dict[str, Any] = {}
    for spec in FIELDS[resource]:
        out[spec.name] = empty_address() if spec.type == "address" else spec.default
    return out


def writable(resource: ResourceType, record: dict[str, Any]) -> dict[str, Any]:
    """The client-writable part of a stored record."""
    return {spec.name: record.get(spec.name) for spec in FIELDS[resource]}
