"""Pydantic models that document the wire shapes in the served OpenAPI document.

Requests are parsed and validated by hand (``validation.py``) so that errors
have the contract's ``{"errors": [{"field", "message"}]}`` shape and merge
patch ``null`` keeps its meaning; these models only describe the shapes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from tolken.sandbox.pms.validation import EMAIL_PATTERN, MAX_STRING, NAME_PATTERN, URL_PATTERN

Kind = Literal["company", "person", "department"]
Status = Literal["planned", "active", "completed", "archived", "tentative"]
#: Every string field, as the server checks it.
Text = Annotated[str, Field(max_length=MAX_STRING)]
#: A required string: at least one character that is not white space.
Name = Annotated[str, Field(min_length=1, max_length=MAX_STRING, pattern=NAME_PATTERN)]
Email = Annotated[
    str, Field(max_length=MAX_STRING, pattern=EMAIL_PATTERN, description="an e-mail address")
]
DateText = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        json_schema_extra={"format": "date"},
        description="a calendar date, YYYY-MM-DD",
    ),
]


def _not_null(schema: dict[str, Any]) -> None:
    """A patch may leave a required field out, but not remove it with null."""
    schema.pop("default", None)
    options = [o for o in schema.pop("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        schema.update(options[0])


class Address(BaseModel):
    """A postal address; every line may be null."""

    model_config = ConfigDict(extra="forbid")
    line1: Text | None = None
    line2: Text | None = None
    postal_code: Text | None = None
    city: Text | None = None
    country: Text | None = None


class _Stamped(BaseModel):
    id: str = Field(description="assigned by the PMS")
    version: int = Field(description="1 at creation, +1 per change")
    created_at: str = Field(description="ISO-8601 UTC, microseconds")
    updated_at: str = Field(description="ISO-8601 UTC, microseconds; strictly increasing")


class _CustomerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    organization_number: Text | None = None
    email: Email | None = None
    phone: Text | None = None
    website: Text | None = None
    address: Address | None = None
    active: bool | None = Field(default=None, description="default true")
    external_ref: Text | None = None


class CustomerCreate(_CustomerFields):
    """POST body of a customer."""

    kind: Kind
    name: Name


class CustomerPatch(_CustomerFields):
    """JSON Merge Patch of a customer; ``kind`` and ``name`` cannot be removed."""

    kind: Kind | None = Field(default=None, json_schema_extra=_not_null)
    name: Name | None = Field(default=None, json_schema_extra=_not_null)


class Customer(_Stamped):
    """A customer: a company, a person or a department."""

    kind: Kind
    number: str | None
    name: str
    first_name: str | None
    last_name: str | None
    organization_number: str | None
    email: str | None
    phone: str | None
    website: str | None
    address: Address
    active: bool
    external_ref: str | None


class _ProjectFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Text | None = None
    customer_id: Text | None = Field(default=None, description="id of an existing customer")
    department_id: Text | None = Field(
        default=None, description="id of an existing customer with kind department"
    )
    start_date: DateText | None = None
    end_date: DateText | None = Field(default=None, description="not before start_date")
    status: Status | None = Field(default=None, description="default planned")
    billable: bool | None = Field(default=None, description="default false")
    progress: int | None = Field(default=None, ge=0, le=100)
    active: bool | None = Field(default=None, description="default true")
    external_ref: Text | None = None


class ProjectCreate(_ProjectFields):
    """POST body of a project."""

    name: Name


class ProjectPatch(_ProjectFields):
    """JSON Merge Patch of a project; ``name`` cannot be removed."""

    name: Name | None = Field(default=None, json_schema_extra=_not_null)


class Project(_Stamped):
    """A project."""

    code: str | None
    name: str
    customer_id: str | None
    department_id: str | None
    start_date: str | None
    end_date: str | None
    status: Status
    billable: bool
    progress: int | None = Field(ge=0, le=100)
    active: bool
    external_ref: str | None


class CustomerPage(BaseModel):
    """One page of customers in (updated_at, id) order."""

    items: list[Customer]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at end")


class ProjectPage(BaseModel):
    """One page of projects in (updated_at, id) order."""

    items: list[Project]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at end")


class ChangeItem(BaseModel):
    """One change; also the body of a webhook delivery."""

    seq: int
    type: Literal["customer", "project"]
    id: str
    op: Literal["upsert", "delete"]


class ChangesPage(BaseModel):
    """Changes after ``after``; resume with ``after=last_seq``."""

    items: list[ChangeItem]
    last_seq: int = Field(description="seq of the last item, or the given after when none")
    has_more: bool = Field(description="true when the page was cut at limit")


class FieldError(BaseModel):
    """One problem; ``field`` is a dotted path (``address.city``) or a header name."""

    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer."""

    errors: list[FieldError]


class StaleVersion(ErrorBody):
    """412 answer: the record moved on."""

    current_version: int


class WebhookWrite(BaseModel):
    """Register a receiver."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=URL_PATTERN, description="http(s) URL that receives a POST per change")
    secret: str = Field(min_length=1, description="HMAC-SHA256 key of X-PMS-Signature")


class Webhook(BaseModel):
    """A registered receiver (the secret is never returned)."""

    id: str
    url: str
    created_at: str


class WebhookList(BaseModel):
    """Every registered receiver."""

    items: list[Webhook]


#: The request bodies of each resource: (POST, PATCH).
WRITE_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "customer": (CustomerCreate, CustomerPatch),
    "project": (ProjectCreate, ProjectPatch),
}
BODY_MODELS: list[type[BaseModel]] = [
    *(model for pair in WRITE_MODELS.values() for model in pair),
    WebhookWrite,
]


def request_body(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    """``openapi_extra`` that documents a hand-parsed JSON request body."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {media_type: {"schema": ref}}}}


def install_openapi(app: FastAPI) -> None:
    """Serve an OpenAPI document of the API only (no ``/_sandbox``), with bearer auth."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        # Only the API routes: the shared /_sandbox routes are not part of the contract.
        routes = [r for r in app.routes if str(getattr(r, "path", "")).startswith("/api/v1/")]
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in BODY_MODELS:
            found = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in found.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas[model.__name__] = found
        doc["components"]["securitySchemes"] = {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "the PMS API key"}
        }
        doc["security"] = [{"apiKey": []}]
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
