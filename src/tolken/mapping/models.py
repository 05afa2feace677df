"""The mapping file as pydantic models (``extra="forbid"``): flows, properties, merge rules.

Paths are dotted: PowerOffice ``MailAddress.City`` (PascalCase), PMS
``address.city`` (the contract's snake_case). Values are compared and merged
in PMS-path space, so every PMS path appears at most once per flow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from tolken.mapping.normalisers import NORMALISERS, Normaliser
from tolken.mapping.transforms import (
    BooleanTransform,
    ConstantTransform,
    DateTransform,
    IntegerTransform,
    ReferenceTransform,
    StringTransform,
    Transform,
    TransformSlot,
)
from tolken.vocabulary import FLOW_IDS, FlowId, PropertyDirection, Side

__all__ = [
    "FLOW_IDS",
    "Flow",
    "FlowId",
    "Mapping",
    "MergeRule",
    "PMSType",
    "Property",
    "Side",
]

PMSType = Literal["string", "boolean", "date", "integer", "reference", "enum"]
Scalar = StrictBool | StrictInt | str

_PO_PATH = re.compile(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*")
_PMS_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _po_path(value: str) -> str:
    if not _PO_PATH.fullmatch(value):
        raise ValueError(f"{value!r} is not a PowerOffice property path like MailAddress.City")
    return value


def _pms_path(value: str) -> str:
    if not _PMS_PATH.fullmatch(value):
        raise ValueError(f"{value!r} is not a PMS property path like address.city")
    return value


PowerOfficePath = Annotated[str, AfterValidator(_po_path)]
PMSPath = Annotated[str, AfterValidator(_pms_path)]


def _known_normaliser(value: str) -> str:
    if value not in NORMALISERS:
        raise ValueError(f"unknown normaliser {value!r}; known: {', '.join(NORMALISERS)}")
    return value


NormaliserName = Annotated[
    str,
    AfterValidator(_known_normaliser),
    WithJsonSchema({"type": "string", "enum": ["exact", "casefold", "digits", "alphanumeric"]}),
]

_DEFAULT_TRANSFORM: dict[str, Callable[[], Transform]] = {
    "string": StringTransform,
    "boolean": BooleanTransform,
    "date": DateTransform,
    "integer": IntegerTransform,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Property(_Strict):
    """One synchronised property: a PowerOffice path, a PMS path, the PMS type and a transform.

    A property without ``poweroffice`` is a constant on the PMS side and needs
    ``transform: {name: constant, value: ...}``. ``direction`` makes a property
    one-way; the default is both ways.
    """

    poweroffice: PowerOfficePath | None = None
    pms: PMSPath
    type: PMSType = "string"
    transform: TransformSlot | None = None
    direction: PropertyDirection = "both"
    note: str | None = Field(default=None, description="Shown in the dataflow document.")

    @model_validator(mode="after")
    def _complete(self) -> Property:
        if self.transform is None:
            if self.type not in _DEFAULT_TRANSFORM:
                raise ValueError(
                    f"a property of type {self.type} needs a transform "
                    f"({'reference' if self.type == 'reference' else 'enum'})"
                )
            object.__setattr__(self, "transform", _DEFAULT_TRANSFORM[self.type]())
        constant = isinstance(self.transform, ConstantTransform)
        if self.poweroffice is None and not constant:
            raise ValueError("a property without a poweroffice path must be a constant transform")
        if constant and self.direction != "to_pms":
            if "direction" in self.model_fields_set:
                raise ValueError("a constant can only be written to the PMS (direction: to_pms)")
            object.__setattr__(self, "direction", "to_pms")
        if isinstance(self.transform, ReferenceTransform) and self.type != "reference":
            raise ValueError("a reference transform needs type: reference")
        return self

    @property
    def converter(self) -> Transform:
        """The transform (always set after validation)."""
        assert self.transform is not None
        return self.transform

    @property
    def writes_pms(self) -> bool:
        return self.direction in ("both", "to_pms")

    @property
    def writes_poweroffice(self) -> bool:
        return self.direction in ("both", "to_poweroffice") and self.poweroffice is not None


class MergeRule(_Strict):
    """Link an existing PMS record when exactly one candidate has an equal normalised key.

    ``when`` restricts the rule to records whose PMS-side values (PowerOffice
    records are mapped first) equal the given ones, e.g. ``{kind: person}``.
    """

    poweroffice: PowerOfficePath
    pms: PMSPath
    normalise: NormaliserName | SkipJsonSchema[Normaliser] = "exact"
    when: dict[PMSPath, Scalar] = Field(default_factory=dict)

    def normaliser(self) -> Normaliser:
        return NORMALISERS[self.normalise] if isinstance(self.normalise, str) else self.normalise


class Flow(_Strict):
    """One pair of record types kept in sync."""

    poweroffice: str = Field(description="PowerOffice Go resource, e.g. Customers.")
    pms: str = Field(description="PMS resource, e.g. customers.")
    title: str | None = Field(default=None, description="Section title in the dataflow document.")
    pms_filter: dict[PMSPath, list[Scalar]] = Field(
        default_factory=dict,
        description="PMS records belong to this flow only when each path has one of the values.",
    )
    properties: list[Property] = Field(min_length=1)
    merge_rules: list[MergeRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Flow:
        seen_pms: set[str] = set()
        seen_po: set[str] = set()
        for prop in self.properties:
            for other in seen_pms:
                if (
                    prop.pms == other
                    or prop.pms.startswith(other + ".")
                    or other.startswith(prop.pms + ".")
                ):
                    raise ValueError(f"PMS property {prop.pms!r} is mapped twice")
            seen_pms.add(prop.pms)
            if prop.writes_poweroffice:
                key = (prop.poweroffice or "").casefold()
                if key in seen_po:
                    raise ValueError(f"PowerOffice property {prop.poweroffice!r} is written twice")
                seen_po.add(key)
        by_pms = {p.pms: p for p in self.properties}
        for rule in self.merge_rules:
            compared = by_pms.get(rule.pms)
            po_path = (compared.poweroffice or "") if compared else ""
            if po_path.casefold() != rule.poweroffice.casefold():
                raise ValueError(
                    f"merge rule {rule.poweroffice} = {rule.pms} must compare a mapped property "
                    f"(a property with poweroffice: {rule.poweroffice} and pms: {rule.pms})"
                )
            for path in rule.when:
                if path not in seen_pms:
                    raise ValueError(f"merge rule condition {path!r} is not a mapped PMS property")
        return self

    # Worked out once per flow (it is frozen): asked for every record written.
    @cached_property
    def pms_paths(self) -> frozenset[str]:
        """Every PMS path the flow maps."""
        return frozenset(p.pms for p in self.properties)

    @cached_property
    def pms_writes(self) -> frozenset[str]:
        """The PMS paths written to the PMS (constants included)."""
        return frozenset(p.pms for p in self.properties if p.writes_pms)

    def property_for(self, pms_path: str) -> Property:
        """The property mapped to ``pms_path``; KeyError when there is none."""
        for prop in self.properties:
            if prop.pms == pms_path:
                return prop
        raise KeyError(pms_path)

    def display_title(self) -> str:
        if self.title:
            return self.title
        pms = self.pms[:-1] if self.pms.endswith("s") else self.pms
        return f"PowerOffice Go {self.poweroffice} to Custom PMS {pms.capitalize()}"


class Mapping(_Strict):
    """The whole mapping file: one entry per flow (all three are required)."""

    version: Literal[1] = 1
    flows: dict[FlowId, Flow]

    @model_validator(mode="after")
    def _all_flows(self) -> Mapping:
        missing = [f for f in FLOW_IDS if f not in self.flows]
        if missing:
            raise ValueError(f"missing flow(s): {', '.join(missing)}")
        self.order()  # rejects reference cycles at load time
        return self

    def flow(self, flow_id: str) -> Flow:
        """The flow named ``flow_id``; KeyError for an unknown one."""
        return self.flows[flow_id]  # type: ignore[index]

    def order(self) -> list[FlowId]:
        """Flow ids in dependency order: a flow comes after the flows it references."""
        done: list[FlowId] = []
        pending = list(FLOW_IDS)
        while pending:
            for flow_id in pending:
                needs = {
                    p.converter.flow
                    for p in self.flows[flow_id].properties
                    if isinstance(p.converter, ReferenceTransform)
                } - {flow_id}
                if needs <= set(done):
                    done.append(flow_id)
                    pending.remove(flow_id)
                    break
            else:
                raise ValueError(f"flows reference each other in a cycle: {', '.join(pending)}")
        return done
