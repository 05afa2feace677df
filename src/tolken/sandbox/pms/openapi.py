"""Pydantic models that document the wire shapes in the served OpenAPI document.

Requests are parsed and validated by hand (``validation.py``) so that errors
have the contract's ``{"errors": [{"field", "message"}]}`` shape and merge
patch ``null`` keeps its meaning; these models only describe the shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["company", "person", "department"]
Status = Literal["planned", "active", "completed", "archived", "tentative"]
Date = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")


class Address(BaseModel):
    """A postal address; every line may be null."""

    model_config = ConfigDict(extra="forbid")
    line1: str | None = None
    line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None


class _Stamped(BaseModel):
    id: str = Field(description="assigned by the PMS")
    version: int = Field(description="1 at creation, +1 per change")
    created_at: str = Field(description="ISO-8601 UTC, microseconds")
    updated_at: str = Field(description="ISO-8601 UTC, microseconds; strictly increasing")


class CustomerWrite(BaseModel):
    """POST body (``kind`` and ``name`` required) or merge patch of a customer."""

    model_config = ConfigDict(extra="forbid")
    kind: Kind | None = None
    number: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    organization_number: str | None = None
    email: str | None = Field(default=None, description="an e-mail address")
    phone: str | None = None
    website: str | None = None
    address: Address | None = None
    active: bool | None = Field(default=None, description="default true")
    external_ref: str | None = None


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


class ProjectWrite(BaseModel):
    """POST body (``name`` required) or merge patch of a project."""

    model_config = ConfigDict(extra="forbid")
    code: str | None = None
    name: str | None = None
    customer_id: str | None = Field(default=None, description="id of a customer")
    department_id: str | None = Field(
        default=None, description="id of a customer with kind department"
    )
    start_date: str | None = Date
    end_date: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="not before start_date"
    )
    status: Status | None = Field(default=None, description="default planned")
    billable: bool | None = Field(default=None, description="default false")
    progress: int | None = Field(default=None, ge=0, le=100)
    active: bool | None = Field(default=None, description="default true")
    external_ref: str | None = None


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
    url: str = Field(description="http(s) URL that receives a POST per change")
    secret: str = Field(description="HMAC-SHA256 key of X-PMS-Signature")


class Webhook(BaseModel):
    """A registered receiver (the secret is never returned)."""

    id: str
    url: str
    created_at: str


class WebhookList(BaseModel):
    """Every registered receiver."""

    items: list[Webhook]


WRITE_MODELS: dict[str, type[BaseModel]] = {
    "customer": CustomerWrite,
    "project": ProjectWrite,
    "webhook": WebhookWrite,
}


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
        for model in WRITE_MODELS.values():
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
