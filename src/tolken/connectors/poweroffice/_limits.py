"""Field values checked against the lengths the PowerOffice spec documents (pure).

A value longer than its property's ``maxLength`` (:data:`._schema.MAX_LENGTH`)
is refused before anything is sent, with
:class:`~tolken.errors.ValidationFailed` naming the field, its length and the
limit: the engine parks that record with this message and the run goes on,
rather than PowerOffice storing or refusing an oversized value on its own terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tolken.connectors.fields import field_paths
from tolken.connectors.poweroffice import _schema
from tolken.errors import FieldError, ValidationFailed

__all__ = ["check_lengths"]


def check_lengths(
    spec: _schema.ResourceSpec, action: str, kind: str, values: Mapping[str, Any]
) -> None:
    """Refuse any string in ``values`` (canonical keys, nested or dotted) longer than the
    ``maxLength`` of ``spec.entity + kind`` (``PostDto`` or ``PatchDto``)."""
    limits = _schema.max_lengths(spec.entity, kind)
    if not limits:
        return
    for path, value in field_paths(values).items():
        limit = limits.get(path)
        if limit is None or not isinstance(value, str) or len(value) <= limit:
            continue
        reason = f"is {len(value)} characters; PowerOffice allows at most {limit}"
        raise ValidationFailed(
            f"cannot {action} {spec.name}.{path}: {reason} ({spec.entity}{kind} maxLength)",
            system="poweroffice",
            field_errors=[FieldError(path, reason)],
        )
