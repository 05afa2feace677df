"""The transforms registry: how one property's value crosses between the systems.

Every built-in transform is a small frozen pydantic model picked by ``name``
(``transform: invert`` or ``transform: {name: enum, values: {...}}`` in YAML).
A mapping built in Python may put any object with ``to_pms``/``to_poweroffice``
/``describe`` in the slot instead, and :func:`register_transform` makes a
custom one available by name. No expressions: parameters are plain data.

A transform that cannot convert a value raises :class:`MappingValueError`
(park the record); a reference whose target is not linked yet raises
:class:`UnresolvedReference` (the record waits; it is never written with a
dangling reference).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    GetPydanticSchema,
    StrictBool,
    StrictInt,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from tolken.errors import RecordError
from tolken.vocabulary import FlowId

__all__ = [
    "BUILTIN_TRANSFORMS",
    "ApplyContext",
    "BooleanTransform",
    "ConstantTransform",
    "DateTransform",
    "DigitsTransform",
    "EnumTransform",
    "IdentityTransform",
    "IntegerTransform",
    "InvertTransform",
    "MappingValueError",
    "ReferenceResolver",
    "ReferenceTransform",
    "StringTransform",
    "Transform",
    "TransformSlot",
    "UnresolvedReference",
    "normalise_date",
    "register_transform",
]


class MappingValueError(RecordError):
    """A value cannot be converted for the other side (e.g. ``"A1"`` into an integer number)."""


class UnresolvedReference(RecordError):
    """A reference points at a record that is not linked yet; the record must wait.

    ``target_flow`` is the flow whose links translate the id, ``value`` the id
    that could not be translated and ``toward`` the side being written.
    """

    def __init__(
        self, *, field: str, target_flow: str, value: Any, toward: Literal["pms", "poweroffice"]
    ):
        source = "PowerOffice" if toward == "pms" else "PMS"
        super().__init__(
            f"{field}: {source} {target_flow} record {value!r} is not linked yet",
            field_errors=(),
        )
        self.field = field
        self.target_flow = target_flow
        self.value = value
        self.toward = toward


@runtime_checkable
class ReferenceResolver(Protocol):
    """Translates ids through another flow's links (the engine passes one in)."""

    def to_pms(self, flow: str, po_id: str) -> str | None:
        """The PMS id linked to PowerOffice record ``po_id`` of ``flow``, or None."""
        ...

    def to_poweroffice(self, flow: str, pms_id: str) -> str | None:
        """The PowerOffice id linked to PMS record ``pms_id`` of ``flow``, or None."""
        ...


@dataclass(frozen=True)
class ApplyContext:
    """What a transform may know besides the value: where it is and how to resolve ids."""

    flow: str
    field: str
    resolver: ReferenceResolver | None = None


@runtime_checkable
class Transform(Protocol):
    """Converts one property's value in both directions; ``None`` means empty."""

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        """PowerOffice value -> PMS value."""
        ...

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        """PMS value -> PowerOffice value."""
        ...

    def describe(self) -> str:
        """A few words for the dataflow document; empty when there is nothing to say."""
        ...


def _name_required(schema: dict[str, Any]) -> None:
    # ``name`` has a default for Python callers, but in a file it picks the transform.
    schema["required"] = ["name", *[r for r in schema.get("required", []) if r != "name"]]


class _Builtin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_name_required)

    def describe(self) -> str:
        return ""


def _bad(ctx: ApplyContext, value: Any, wanted: str) -> MappingValueError:
    return MappingValueError(f"{ctx.field}: {value!r} is not {wanted}")


def _empty(value: Any) -> bool:
    return value is None or value == ""


class IdentityTransform(_Builtin):
    """The value unchanged in both directions."""

    name: Literal["identity"] = "identity"

    def to_pms(self, value: Any, _ctx: ApplyContext) -> Any:
        return value

    def to_poweroffice(self, value: Any, _ctx: ApplyContext) -> Any:
        return value


def _as_text(value: Any, ctx: ApplyContext) -> str | None:
    if _empty(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad(ctx, value, "text")
    return str(value)


def _as_int(value: Any, ctx: ApplyContext) -> int | None:
    if _empty(value):
        return None
    if isinstance(value, bool):
        raise _bad(ctx, value, "a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise _bad(ctx, value, "a whole number")


def _as_bool(value: Any, ctx: ApplyContext) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    raise _bad(ctx, value, "true or false")


class StringTransform(_Builtin):
    """Text on the PMS side; ``poweroffice_type: integer`` for numbers PowerOffice keeps as int."""

    name: Literal["string"] = "string"
    poweroffice_type: Literal["string", "integer"] = "string"

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        return _as_text(value, ctx)

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        if self.poweroffice_type == "integer":
            return _as_int(value, ctx)
        return _as_text(value, ctx)

    def describe(self) -> str:
        return "whole number in PowerOffice" if self.poweroffice_type == "integer" else ""


class IntegerTransform(_Builtin):
    """A whole number on both sides."""

    name: Literal["integer"] = "integer"

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        return _as_int(value, ctx)

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        return _as_int(value, ctx)


class BooleanTransform(_Builtin):
    """True/false on both sides."""

    name: Literal["boolean"] = "boolean"

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        return _as_bool(value, ctx)

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        return _as_bool(value, ctx)


class InvertTransform(_Builtin):
    """A flag that means the opposite on the other side (``IsArchived`` <-> ``active``)."""

    name: Literal["invert"] = "invert"

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        flag = _as_bool(value, ctx)
        return None if flag is None else not flag

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        return self.to_pms(value, ctx)

    def describe(self) -> str:
        return "inverted"


_DATE = re.compile(
    r"(\d{4}-\d{2}-\d{2})"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


def normalise_date(value: Any) -> str | None:
    """``YYYY-MM-DD`` from a date, or from ``YYYY-MM-DD[THH:MM:SS[.fffffff][offset]]`` text.

    Raises ValueError for anything else (an impossible date included).
    """
    if _empty(value):
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        match = _DATE.fullmatch(value.strip())
        if match:
            return date.fromisoformat(match.group(1)).isoformat()
    raise ValueError(f"{value!r} is not a date")


class DateTransform(_Builtin):
    """A calendar date; accepts midnight timestamps, always writes ``YYYY-MM-DD``."""

    name: Literal["date"] = "date"

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        try:
            return normalise_date(value)
        except ValueError:
            raise _bad(ctx, value, "a date (YYYY-MM-DD)") from None

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        return self.to_pms(value, ctx)


class DigitsTransform(_Builtin):
    """Text reduced to its digits (org numbers written with spaces or ``MVA``)."""

    name: Literal["digits"] = "digits"

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        text = _as_text(value, ctx)
        digits = "".join(ch for ch in text if ch.isdigit()) if text is not None else ""
        return digits or None

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        return self.to_pms(value, ctx)

    def describe(self) -> str:
        return "digits only"


class ConstantTransform(_Builtin):
    """A fixed PMS value (``kind: department``); nothing is written to PowerOffice."""

    name: Literal["constant"] = "constant"
    value: str | StrictBool | StrictInt

    def to_pms(self, _value: Any, _ctx: ApplyContext) -> Any:
        return self.value

    def to_poweroffice(self, _value: Any, _ctx: ApplyContext) -> Any:
        return None

    def describe(self) -> str:
        return f"always {_show(self.value)}"


EnumKey = StrictBool | StrictInt | str


class EnumTransform(_Builtin):
    """A fixed table of values, PowerOffice value -> PMS value, used both ways.

    ``default`` is the PMS value for an empty PowerOffice value (``IsPerson``
    left null means a company). Values outside the table park the record.
    """

    name: Literal["enum"] = "enum"
    values: dict[EnumKey, str] = Field(min_length=1)
    default: str | None = None

    @model_validator(mode="after")
    def _one_to_one(self) -> EnumTransform:
        seen: dict[str, EnumKey] = {}
        for po_value, pms_value in self.values.items():
            if pms_value in seen:
                raise ValueError(
                    f"PMS value {pms_value!r} is used for both {seen[pms_value]!r} and "
                    f"{po_value!r}; the table must work in both directions"
                )
            seen[pms_value] = po_value
        if self.default is not None and self.default not in seen:
            raise ValueError(f"default {self.default!r} is not one of the PMS values")
        return self

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        if _empty(value):
            return self.default
        for po_value, pms_value in self.values.items():
            if po_value == value and type(po_value) is type(value):
                return pms_value
        raise _bad(ctx, value, f"one of {', '.join(_show(k) for k in self.values)}")

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        if _empty(value):
            return None
        for po_value, pms_value in self.values.items():
            if pms_value == value:
                return po_value
        raise _bad(ctx, value, f"one of {', '.join(self.values.values())}")

    def describe(self) -> str:
        return ", ".join(f"{_show(k)} → {v}" for k, v in self.values.items())


class ReferenceTransform(_Builtin):
    """An id of another flow's record, translated through that flow's links."""

    name: Literal["reference"] = "reference"
    flow: FlowId

    def to_pms(self, value: Any, ctx: ApplyContext) -> Any:
        if _empty(value):
            return None
        found = ctx.resolver.to_pms(self.flow, str(value)) if ctx.resolver else None
        if found is None:
            raise UnresolvedReference(
                field=ctx.field, target_flow=self.flow, value=value, toward="pms"
            )
        return found

    def to_poweroffice(self, value: Any, ctx: ApplyContext) -> Any:
        if _empty(value):
            return None
        found = ctx.resolver.to_poweroffice(self.flow, str(value)) if ctx.resolver else None
        if found is None:
            raise UnresolvedReference(
                field=ctx.field, target_flow=self.flow, value=value, toward="poweroffice"
            )
        # PowerOffice ids are int64; keep them numbers so a JSON Patch carries the right type.
        return int(found) if found.isdigit() else found

    def describe(self) -> str:
        return f"via {self.flow} links"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


BuiltinTransform = Annotated[
    IdentityTransform
    | StringTransform
    | IntegerTransform
    | BooleanTransform
    | InvertTransform
    | DateTransform
    | DigitsTransform
    | ConstantTransform
    | EnumTransform
    | ReferenceTransform,
    Field(discriminator="name"),
]

BUILTIN_TRANSFORMS: dict[str, type[_Builtin]] = {
    cls.model_fields["name"].default: cls
    for cls in (
        IdentityTransform,
        StringTransform,
        IntegerTransform,
        BooleanTransform,
        InvertTransform,
        DateTransform,
        DigitsTransform,
        ConstantTransform,
        EnumTransform,
        ReferenceTransform,
    )
}

_CUSTOM: dict[str, Callable[[dict[str, Any]], Transform]] = {}


def register_transform(name: str, factory: Callable[[dict[str, Any]], Transform]) -> None:
    """Make a custom transform available by ``name``; ``factory`` gets the YAML parameters."""
    if name in BUILTIN_TRANSFORMS:
        raise ValueError(f"{name!r} is a built-in transform")
    _CUSTOM[name] = factory


def _transform_core_schema(_source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
    inner = handler.generate_schema(BuiltinTransform)

    def build(value: Any, validate: core_schema.ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict):
            name = value.get("name")
            if isinstance(name, str) and name in _CUSTOM:
                params = {k: v for k, v in value.items() if k != "name"}
                return _CUSTOM[name](params)
            return validate(value)
        if isinstance(value, Transform):
            return value  # a Python object put in the slot directly
        return validate(value)

    return core_schema.no_info_wrap_validator_function(build, inner)


def _transform_json_schema(schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
    # In YAML a transform without required parameters may be written as its bare name.
    bare = [
        name
        for name, cls in BUILTIN_TRANSFORMS.items()
        if all(not f.is_required() for k, f in cls.model_fields.items() if k != "name")
    ]
    return {"anyOf": [{"type": "string", "enum": bare}, handler(schema)]}


TransformSlot = Annotated[
    Transform, GetPydanticSchema(_transform_core_schema, _transform_json_schema)
]
"""A model field holding a transform: a name, ``{name: ..., params}``, or a Python object."""
