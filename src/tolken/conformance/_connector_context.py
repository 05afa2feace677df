"""What the configured-connector rules share: the connector, test-record fields, cleanup.

``tolken check-pms --config`` checks a PMS through the connector tolken.yaml
configures (``rest``, or a Python connector), so it speaks the PMS's own
shape: the test records are written in the PMS field names the mapping
names (the customers flow's ``Name`` field, its ``pms_filter`` values), and
every HTTP request the connector sends is kept as an
:class:`~tolken.conformance._context.Exchange` through an httpx event hook.

Every record a rule creates is remembered; :meth:`ConnectorContext.clean_up`
deletes each through the connector and confirms it is gone, then sweeps a
bounded listing for records with this run's name tag.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import httpx

from tolken.conformance._context import Exchange, excerpt
from tolken.connectors.base import Connector, RemoteRecord
from tolken.errors import NotFound, Stopped, TolkenError
from tolken.mapping.models import Mapping as MappingFile

__all__ = ["ConnectorContext", "TestFields", "record_exchanges", "value_at"]

_SWEEP_MAX_RECORDS = 10_000


def value_at(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a record (None when absent)."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


@dataclass(frozen=True)
class TestFields:
    """The PMS fields test records are written in, taken from the mapping."""

    resource: str
    name: str
    other: str | None
    constants: Mapping[str, Any]

    @classmethod
    def from_mapping(cls, mapping: MappingFile) -> TestFields:
        """The customers flow's Name field, a second string field, and its filter values."""
        flow = mapping.flows.get("customers") or next(iter(mapping.flows.values()))
        by_source = {p.poweroffice: p.pms for p in flow.properties if p.poweroffice}
        name = by_source.get("Name") or flow.properties[0].pms
        other = next(
            (
                p.pms
                for p in flow.properties
                if p.poweroffice in ("EmailAddress", "PhoneNumber", "WebsiteUrl")
                and p.direction == "both"
            ),
            None,
        )
        constants = {path: values[0] for path, values in flow.pms_filter.items() if values}
        return cls(flow.pms, name, other, constants)


def record_exchanges(exchanges: list[Exchange]) -> dict[str, list[Any]]:
    """httpx event hooks that append every request and its answer to ``exchanges``."""

    def on_response(response: httpx.Response) -> None:
        request = response.request
        response.read()
        url = request.url
        target = url.path.lstrip("/") + (f"?{url.query.decode()}" if url.query else "")
        exchanges.append(
            Exchange(
                request.method,
                target,
                excerpt(request.content.decode(errors="replace")),
                response.status_code,
                excerpt(response.text),
            )
        )

    return {"response": [on_response]}


@dataclass
class ConnectorContext:
    """The configured connector and the state one check run accumulates."""

    connector: Connector
    fields: TestFields
    deletes: bool
    capture: str
    """``updated-since``, ``feed``, ``none`` (rest) or ``listing`` (a Python connector)."""
    overlap_seconds: float
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    created: list[tuple[str, str]] = field(default_factory=list)
    deleted: set[tuple[str, str]] = field(default_factory=set)
    exchanges: list[Exchange] = field(default_factory=list)

    def name(self, label: str) -> str:
        """The name of a test record: recognisable, unique to this run."""
        return f"tolken-check {self.tag} {label}"

    def body(self, label: str, **more: Any) -> dict[str, Any]:
        """The flat field paths of a test record named for ``label``."""
        return {**self.fields.constants, self.fields.name: self.name(label), **more}

    def create(self, label: str, *, key: str | None = None, **more: Any) -> RemoteRecord:
        """Create a test record through the connector and remember it for cleanup."""
        record = self.connector.create(
            self.fields.resource,
            self.body(label, **more),
            idempotency_key=key or f"tolken-check-{self.tag}-{label}",
        )
        self.track(record.id)
        return record

    def track(self, record_id: str) -> None:
        """Remember a record this run made."""
        key = (self.fields.resource, record_id)
        if key not in self.created:
            self.created.append(key)

    def forget(self, record_id: str) -> None:
        """A rule deleted this record itself and saw it gone."""
        self.deleted.add((self.fields.resource, record_id))

    def ours(self, record: RemoteRecord) -> bool:
        """True for a test record of this run."""
        return str(value_at(record.data, self.fields.name) or "").startswith(self.name(""))

    def listing(self) -> list[RemoteRecord]:
        """Every record of the test resource, through the connector's full listing (bounded)."""
        return list(islice(self.connector.list(self.fields.resource), _SWEEP_MAX_RECORDS))

    # -- cleanup ------------------------------------------------------------

    def delete_and_confirm(self, record_id: str) -> str | None:
        """Delete through the connector and read it back: None when gone, else why not."""
        resource = self.fields.resource
        try:
            self.connector.delete(resource, record_id)
        except NotFound:
            pass
        except Stopped:
            raise
        except TolkenError as exc:
            return f"delete failed: {type(exc).__name__}: {exc}"
        try:
            self.connector.get(resource, record_id)
        except NotFound:
            return None
        except Stopped:
            raise
        except TolkenError as exc:
            return f"reading it after the delete failed: {type(exc).__name__}: {exc}"
        return "still readable after the delete"

    def clean_up(self) -> tuple[list[str], list[str]]:
        """Delete what this run made, sweep for strays; (notes, ``resource/id`` left behind)."""
        left: dict[tuple[str, str], str] = {}
        deleted = 0
        if not self.deletes:
            keys = [k for k in self.created if k not in self.deleted]
            left = dict.fromkeys(keys, "the configuration declares no delete")
        else:
            for key in reversed(self.created):
                if key in self.deleted:
                    continue
                why = self.delete_and_confirm(key[1])
                if why is None:
                    self.forget(key[1])
                    deleted += 1
                else:
                    left[key] = why
            try:
                strays = [r for r in self.listing() if self.ours(r)]
            except TolkenError as exc:
                strays = []
                left[(self.fields.resource, "?")] = f"the sweep could not list: {exc}"
            for record in strays:
                key = (self.fields.resource, record.id)
                if key in left:
                    continue
                why = self.delete_and_confirm(record.id)
                if why is None:
                    self.forget(record.id)
                    deleted += 1
                else:
                    left[key] = "found in the listing; " + why
        notes = [f"deleted {deleted} test record(s)"]
        if left:
            notes.append(
                "could not delete (remove by hand): "
                + ", ".join(f"{r}/{i} ({why})" for (r, i), why in left.items())
            )
        return notes, [f"{r}/{i}" for r, i in left]
