"""A loopback REST API of a chosen shape per test, and the ``rest`` connector pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from restapi import KEY, Connect, RestApi, Shape, running
from tolken.config import PMSSettings, RestSettings
from tolken.connectors import _http
from tolken.connectors.rest import RestConnector


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with _http.testing():
        yield


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[RestApi, str]]:
    """One loopback server per module."""
    with running() as found:
        yield found


@pytest.fixture
def api(served: tuple[RestApi, str]) -> RestApi:
    """The server's state, emptied, with the default shape (tests set ``api.shape``)."""
    served[0].reset(Shape())
    return served[0]


def settings(url: str, rest: dict[str, Any], **pms: Any) -> PMSSettings:
    """PMS settings for ``connector: rest`` with ``rest`` (idempotency by reference by default)."""
    section = {"idempotency": {"reference_field": "external_ref"}, **rest}
    return PMSSettings(
        connector="rest",
        base_url=url,
        api_key=SecretStr(KEY),
        rest=RestSettings.model_validate(section),
        timeout_seconds=5,
        **pms,
    )


@pytest.fixture
def connect(served: tuple[RestApi, str]) -> Iterator[Connect]:
    """``connect(rest_section, **pms_settings)``: a connector of the loopback API, closed after."""
    made: list[RestConnector] = []

    def make(rest: dict[str, Any], **pms: Any) -> RestConnector:
        connector = RestConnector(settings(served[1], rest, **pms))
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()
