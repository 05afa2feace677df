"""What a connector must provide to run the contract suite: a ``ContractSubject``.

See the docstring of ``tests/contract/conftest.py`` for how to add one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from tolken.connectors.base import Connector


class Control(Protocol):
    """The sandbox control surface of the system behind a subject (DESIGN §7)."""

    def reset(self) -> None:
        """Empty state, clear stats and faults."""

    def seed(self, resource: str, count: int) -> None:
        """Add ``count`` sample records of ``resource`` (a connector resource name)."""

    def faults(self, *, statuses: Sequence[int], rate: float = 1.0) -> None:
        """Answer every API request (with probability ``rate``) with one of ``statuses``."""

    def clear_faults(self) -> None:
        """Stop injecting faults."""

    def requests(self, method: str, resource: str, *, item: bool = False) -> int:
        """How many ``method`` requests reached the list path of ``resource``
        (``item=True``: the ``/{id}`` path) since the last reset."""


class SandboxControl:
    """:class:`Control` through the ``/_sandbox/*`` surface both sandbox servers share.

    ``http`` is any httpx client reaching ``base``; ``api_path`` is where the
    system's API lives (``/v2``, ``/api/v1``), which the stats name requests by.
    """

    def __init__(self, http: httpx.Client, base: str, api_path: str) -> None:
        self._http = http
        self._base = base
        self._api_path = api_path

    def _post(self, path: str, body: dict[str, Any]) -> None:
        self._http.post(f"{self._base}/_sandbox/{path}", json=body).raise_for_status()

    def reset(self) -> None:
        self._post("reset", {})

    def seed(self, resource: str, count: int) -> None:
        self._post("seed", {resource.lower(): count})

    def faults(self, *, statuses: Sequence[int], rate: float = 1.0) -> None:
        self._post("faults", {"rate": rate, "statuses": list(statuses)})

    def clear_faults(self) -> None:
        self._post("faults", {})

    def requests(self, method: str, resource: str, *, item: bool = False) -> int:
        stats = self._http.get(f"{self._base}/_sandbox/stats").json()["requests"]
        key = f"{method} {self._api_path}/{resource}" + ("/{id}" if item else "")
        return int(stats.get(key, 0))


@dataclass(frozen=True)
class ResourceCase:
    """Sample data for one resource of a subject.

    ``new(token)`` returns ``(data, idempotency_key)`` for a record that is
    unique per ``token`` (a short lowercase hex string). ``change`` is a valid
    field change and ``invalid_change`` one the system refuses with a 4xx.
    Writes are flat field paths, as the engine sends them (``"address.city"``
    for a field of a nested object). Values read back must equal what was
    written, compared path by path on the record's ``data``.
    """

    resource: str
    new: Callable[[str], tuple[dict[str, Any], str]]
    change: Mapping[str, Any]
    invalid_change: Mapping[str, Any]
    missing_id: str = "999999999"


@dataclass
class SubjectHandle:
    """A running system plus a way to make connectors for it.

    ``connect(page_size=None, valid_credentials=True)`` returns a fresh
    connector; with ``valid_credentials=False`` its credentials are wrong and
    contain ``bad_secret``. ``max_attempts`` is how many times the connector
    tries a retriable request in total.
    """

    control: Control
    connect: Callable[..., Connector]
    max_attempts: int
    bad_secret: str


@dataclass(frozen=True)
class ContractSubject:
    """One connector configuration the contract suite runs against."""

    name: str
    start: Callable[[], AbstractContextManager[SubjectHandle]]
    """Start the system once (per test session); yields the handle."""
    resources: Sequence[ResourceCase] = field(default_factory=tuple)
