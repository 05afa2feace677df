"""Apply a flow's mapping to records: pure functions the engine calls.

Comparison and three-way merge happen in *PMS-path space*: a flat dict
``{"address.city": "Oslo", "active": True}`` in canonical form (empty text is
None, dates are ``YYYY-MM-DD``). :func:`to_pms_flat` maps a PowerOffice record
into that space, :func:`project` reads a PMS record into it, and the shadow
stores the same shape. Merged values go back out as flat field paths too:
:func:`pms_changes` keeps the PMS paths written to the PMS
(``{"address.city": "Oslo"}``), :func:`poweroffice_changes` turns them into
PowerOffice paths and values (``{"MailAddress.City": "Oslo"}``). Connectors
take writes in that form and build their own wire body from it (a JSON Merge
Patch, a JSON Patch, a POST body), so nothing here nests only to be flattened
again. :func:`to_pms` and :func:`to_poweroffice` give whole records, nested.

PowerOffice records arrive as dicts with PascalCase keys (read
case-insensitively), PMS records as the contract's snake_case dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as AbcMapping
from functools import partial
from typing import Any

from tolken.errors import RecordError
from tolken.mapping.models import Flow, MergeRule, Property, Side
from tolken.mapping.paths import get_parts, get_path, unflatten
from tolken.mapping.transforms import (
    ApplyContext,
    ReferenceResolver,
    UnresolvedReference,
    normalise_date,
)

__all__ = [
    "POProjector",
    "belongs",
    "canonical",
    "merge_key_flat",
    "merge_keys",
    "pms_changes",
    "pms_fields",
    "po_projector",
    "poweroffice_changes",
    "project",
    "to_pms",
    "to_pms_flat",
    "to_poweroffice",
]

Record = AbcMapping[str, Any]


def pms_fields(flow: Flow, *, writable_to: Side | None = None) -> list[str]:
    """The flow's PMS paths; ``writable_to`` keeps those that may be written to that side."""
    props = flow.properties
    if writable_to == "pms":
        props = [p for p in props if p.writes_pms]
    elif writable_to == "poweroffice":
        props = [p for p in props if p.writes_poweroffice]
    return [p.pms for p in props]


def canonical(prop: Property, value: Any) -> Any:
    """``value`` in the canonical PMS-space form for ``prop``'s type, so equal means equal."""
    if value is None or value == "":
        return None
    if prop.type == "date":
        try:
            return normalise_date(value)
        except ValueError:
            return value  # left as is: writing it to PowerOffice will park the record
    if prop.type == "integer" and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    if prop.type == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def belongs(flow: Flow, pms_record: Record) -> bool:
    """Whether a PMS record of the flow's resource belongs to this flow (``pms_filter``)."""
    return all(get_path(pms_record, path) in allowed for path, allowed in flow.pms_filter.items())


def project(flow: Flow, pms_record: Record) -> dict[str, Any]:
    """A PMS record as ``{pms_path: canonical value}`` over every mapped property."""
    return {p.pms: canonical(p, get_path(pms_record, p.pms)) for p in flow.properties}


def _po_to_pms(flow: Flow, prop: Property, po_record: Record, resolver: Any) -> Any:
    ctx = ApplyContext(flow=flow.poweroffice, field=prop.pms, resolver=resolver)
    raw = get_path(po_record, prop.poweroffice) if prop.poweroffice else None
    return canonical(prop, prop.converter.to_pms(raw, ctx))


def to_pms_flat(
    flow: Flow,
    po_record: Record,
    resolver: ReferenceResolver | None = None,
    *,
    unresolved: set[str] | None = None,
) -> dict[str, Any]:
    """A PowerOffice record in PMS-path space: every property written to the PMS, constants too.

    A reference that is not linked yet raises
    :class:`~tolken.mapping.transforms.UnresolvedReference`; when an
    ``unresolved`` set is passed instead, its PMS path is added there and left
    out of the result (the record must wait). A value that cannot be converted
    raises :class:`~tolken.mapping.transforms.MappingValueError`. Many records:
    :func:`po_projector`.
    """
    return po_projector(flow, resolver)(po_record, unresolved)


POProjector = Callable[[Record, set[str] | None], dict[str, Any]]
"""``(po_record, unresolved)`` -> :func:`to_pms_flat` of the record (see :func:`po_projector`)."""


def po_projector(flow: Flow, resolver: ReferenceResolver | None = None) -> POProjector:
    """:func:`to_pms_flat` for many records of ``flow``: what each property needs is made once.

    Its paths split, its transform, its :func:`canonical` and its
    :class:`~tolken.mapping.transforms.ApplyContext` (making a context per property per record
    cost a fifth of mapping a record).
    """
    steps = [
        (
            prop.pms,
            tuple(prop.poweroffice.split(".")) if prop.poweroffice else None,
            prop.converter.to_pms,
            partial(canonical, prop),
            ApplyContext(flow=flow.poweroffice, field=prop.pms, resolver=resolver),
        )
        for prop in flow.properties
        if prop.writes_pms
    ]

    def to_flat(po_record: Record, unresolved: set[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pms, parts, convert, canonical_form, ctx in steps:
            raw = get_parts(po_record, parts) if parts is not None else None
            try:
                out[pms] = canonical_form(convert(raw, ctx))
            except UnresolvedReference:
                if unresolved is None:
                    raise
                unresolved.add(pms)
        return out

    return to_flat


def to_pms(
    flow: Flow, po_record: Record, resolver: ReferenceResolver | None = None
) -> dict[str, Any]:
    """The PMS record body for a PowerOffice record (nested, e.g. ``{"address": {...}}``)."""
    return unflatten(to_pms_flat(flow, po_record, resolver))


def pms_changes(flow: Flow, flat_changes: AbcMapping[str, Any]) -> dict[str, Any]:
    """The PMS writes for PMS-path changes: ``{pms_path: value}``, flat, as the PMS connector takes
    them (properties not written to the PMS dropped; an unknown path is a KeyError)."""
    writable = flow.pms_writes
    if not flow.pms_paths.issuperset(flat_changes):
        unknown = set(flat_changes) - flow.pms_paths
        raise KeyError(f"not mapped in this flow: {', '.join(sorted(unknown))}")
    return {k: v for k, v in flat_changes.items() if k in writable}


def poweroffice_changes(
    flow: Flow, flat_changes: AbcMapping[str, Any], resolver: ReferenceResolver | None = None
) -> dict[str, Any]:
    """The PowerOffice writes for PMS-path changes: ``{"MailAddress.ZipCode": "5003"}``, flat
    PascalCase paths with converted values, as the PowerOffice connector takes them.

    Properties that are not written to PowerOffice (constants, ``to_pms``) are
    left out; an unknown path is a KeyError.
    """
    out: dict[str, Any] = {}
    for pms_path, value in flat_changes.items():
        prop = flow.property_for(pms_path)
        if not prop.writes_poweroffice or prop.poweroffice is None:
            continue
        ctx = ApplyContext(flow=flow.poweroffice, field=prop.pms, resolver=resolver)
        out[prop.poweroffice] = prop.converter.to_poweroffice(canonical(prop, value), ctx)
    return out


def to_poweroffice(
    flow: Flow, pms_record: Record, resolver: ReferenceResolver | None = None
) -> dict[str, Any]:
    """The PowerOffice record (PascalCase, nested) for every property written to PowerOffice."""
    return unflatten(poweroffice_changes(flow, project(flow, pms_record), resolver))


def _condition_holds(flow: Flow, rule: MergeRule, record: Record, side: Side) -> bool:
    for path, wanted in rule.when.items():
        prop = flow.property_for(path)
        if side == "pms":
            actual = canonical(prop, get_path(record, path))
        else:
            try:
                actual = _po_to_pms(flow, prop, record, None)
            except RecordError:
                return False
        if actual != wanted:
            return False
    return True


def merge_key_flat(rule: MergeRule, values: AbcMapping[str, Any]) -> str | None:
    """:func:`merge_keys` over a record already in PMS-path space (either side).

    A PowerOffice record mapped with :func:`to_pms_flat` carries the rule's
    value under ``rule.pms`` (converted by that property's transform), so both
    sides are keyed the same way.
    """
    for path, wanted in rule.when.items():
        if values.get(path) != wanted:
            return None
    return _key(rule, values.get(rule.pms))


def _key(rule: MergeRule, value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return rule.normaliser()(text) or None


def merge_keys(flow: Flow, rule: MergeRule, record: Record, side: Side) -> str | None:
    """The normalised match key of ``record`` under ``rule``, or None when the rule does not apply.

    ``side`` says which system the record comes from. None when the rule's
    condition does not hold or the value is empty after normalising. The
    engine links only when exactly one candidate has the same key.
    """
    if rule.when and not _condition_holds(flow, rule, record, side):
        return None
    return _key(rule, get_path(record, rule.poweroffice if side == "poweroffice" else rule.pms))
