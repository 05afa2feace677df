"""The sandbox-only control surface shared by both simulators (DESIGN §7).

`install_control(app, on_reset=..., on_seed=...)` adds, to any FastAPI app:

``POST /_sandbox/faults``
    ``{"rate": 0..1, "statuses": [429, 500, 502, 503], "latency_ms": 0,
    "drop_rate": 0..1, "drop_hang_seconds": 30, "seed": null}`` → the active
    settings. Every later API request first waits ``latency_ms``; then with
    probability ``drop_rate`` it is *dropped*: the server never answers and
    holds the request until the client gives up and disconnects (at most
    ``drop_hang_seconds``), so over real HTTP the client sees a read timeout.
    (ASGI offers no way to reset a TCP connection; a hang is what a lost
    response looks like to a client anyway. In-process transports cannot
    disconnect, so there a drop lasts the full ``drop_hang_seconds``: use drops
    over loopback only.) Otherwise, with probability ``rate``, it is answered by
    a random status from ``statuses``; an injected 429 or 503 carries
    ``Retry-After: 1``. ``seed`` makes the draws reproducible. ``GET`` returns
    the settings; ``{}`` switches faults off.
``GET /_sandbox/stats``
    ``{"requests": {"GET /v2/Customers": 3, "PATCH /v2/Customers/{id}": 1},
    "statuses": {"200": 3, "429": 1}}``: every request the API received
    (faulted and rate-limited ones included), keyed by method and the matched
    route template, and every answer by status (a dropped request has none).
    Route path parameters should be named ``{id}``. ``/_sandbox/*`` is not
    counted. ``?<client field>=KEY`` (``client`` on the PowerOffice simulator,
    ``api_key`` on the PMS) narrows both counts to the requests of that
    client, as ``identify`` attributes them from the request headers.
``POST /_sandbox/reset``
    Calls ``on_reset(None)`` (every client's state emptied) and clears stats
    and faults. With ``{"<client field>": KEY}`` it calls ``on_reset(KEY)``
    (only that client's state) and forgets only that client's counts; faults
    stay.
``POST /_sandbox/seed``
    ``{"customers": N, "departments": N, "projects": N}``, optionally with
    ``"<client field>": KEY`` → whatever ``on_seed(counts, KEY or None)``
    returns (JSON).
``GET|POST /_sandbox/settings``
    Runtime switches of the simulator, when it passes ``settings_hook``: the
    hook receives the posted object (``{}`` for GET) and returns the settings.

No authentication: the sandbox only listens on loopback.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FaultSettings", "SandboxControl", "install_control"]

CONTROL_PREFIX = "/_sandbox"

SettingsHook = Callable[[dict[str, Any]], dict[str, Any]]
FaultResponder = Callable[[int], Response]
#: The client a request belongs to, from its headers (None: none or unknown).
Identify = Callable[[Scope], str | None]


class FaultSettings(BaseModel):
    """Fault injection settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    statuses: list[int] = Field(default_factory=lambda: [429, 500, 502, 503], min_length=1)
    latency_ms: float = Field(default=0.0, ge=0.0)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_hang_seconds: float = Field(default=30.0, ge=0.0)
    seed: int | None = None


def default_fault_response(status: int) -> Response:
    """Gateway-style body, as Azure API Management answers."""
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    message = (
        "Rate limit is exceeded. Try again in 1 seconds."
        if status == 429
        else "Injected sandbox fault."
    )
    return JSONResponse({"statusCode": status, "message": message}, status, headers=headers)


class SandboxControl:
    """Live control state of one simulator: faults and request statistics."""

    def __init__(
        self, app: FastAPI, fault_response: FaultResponder, identify: Identify | None = None
    ) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str | None, str]] = Counter()
        self._statuses: Counter[tuple[str | None, str]] = Counter()
        self.fault_response = fault_response
        self.identify: Identify = identify or (lambda _scope: None)
        self.faults = FaultSettings()
        self._random = random.Random()

    # -- statistics ---------------------------------------------------------
    def record(self, key: str, client: str | None = None) -> None:
        """Count one request of ``client`` under ``"METHOD /template"``."""
        with self._lock:
            self._counts[client, key] += 1

    def record_status(self, status: int, client: str | None = None) -> None:
        """Count one answer of ``client`` with ``status``."""
        with self._lock:
            self._statuses[client, str(status)] += 1

    def stats(self, client: str | None = None) -> dict[str, int]:
        """Request counts by ``"METHOD /template"``: all, or ``client``'s only."""
        return self._totals(self._counts, client)

    def statuses(self, client: str | None = None) -> dict[str, int]:
        """Answer counts by status: all, or ``client``'s only."""
        return self._totals(self._statuses, client)

    def _totals(
        self, counts: Counter[tuple[str | None, str]], client: str | None
    ) -> dict[str, int]:
        totals: Counter[str] = Counter()
        with self._lock:
            for (owner, key), count in counts.items():
                if client is None or owner == client:
                    totals[key] += count
        return dict(totals)

    def reset_stats(self, client: str | None = None) -> None:
        """Forget every counted request, or only ``client``'s."""
        with self._lock:
            for counts in (self._counts, self._statuses):
                for owned in [k for k in counts if client is None or k[0] == client]:
                    del counts[owned]

    # -- faults -------------------------------------------------------------
    def set_faults(self, faults: FaultSettings) -> None:
        """Activate ``faults`` (replacing the previous settings)."""
        with self._lock:
            self.faults = faults
            self._random = random.Random(faults.seed)

    def draw(self) -> tuple[bool, int | None]:
        """Decide the fate of one request: (drop it?, injected status or None)."""
        with self._lock:
            faults = self.faults
            if faults.drop_rate and self._random.random() < faults.drop_rate:
                return True, None
            if faults.rate and self._random.random() < faults.rate:
                return False, self._random.choice(faults.statuses)
        return False, None

    def template(self, scope: Scope) -> str:
        """Route template of a request path (``/v2/Customers/{id}``), else the raw path."""
        for route in self._app.router.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                path = getattr(route, "path", None)
                if isinstance(path, str):
                    return path
        return str(scope["path"])


class _ControlMiddleware:
    """Counts API requests and injects latency, drops and faulty statuses."""

    def __init__(self, app: ASGIApp, control: SandboxControl) -> None:
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        control = self.control
        client = control.identify(scope)
        control.record(f"{scope['method']} {control.template(scope)}", client)

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                control.record_status(int(message["status"]), client)
            await send(message)

        faults = control.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        drop, status = control.draw()
        if drop:
            await _hang_until_disconnect(receive, faults.drop_hang_seconds)
            return
        if status is not None:
            await control.fault_response(status)(scope, receive, counted_send)
            return
        await self.app(scope, receive, counted_send)


async def _hang_until_disconnect(receive: Receive, limit: float) -> None:
    """Answer nothing; return when the client disconnects or after ``limit`` seconds."""

    async def wait() -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                return

    try:
        await asyncio.wait_for(wait(), timeout=limit)
    except TimeoutError:
        return


def _problem(detail: str) -> JSONResponse:
    return JSONResponse({"title": "Invalid sandbox control request", "detail": detail}, 400)


async def _json_object(request: Request) -> dict[str, Any] | JSONResponse:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return _problem(f"Malformed JSON: {exc}")
    if not isinstance(body, dict):
        return _problem("Expected a JSON object.")
    return body


def _client_of(body: dict[str, Any], field: str) -> str | JSONResponse | None:
    """The client named in a control request's body (None: every client / the default)."""
    client = body.get(field)
    if client is None:
        return None
    if not isinstance(client, str) or not client:
        return _problem(f"'{field}' must be a non-empty string.")
    return client


def install_control(
    app: FastAPI,
    *,
    on_reset: Callable[[str | None], None],
    on_seed: Callable[[dict[str, int], str | None], Mapping[str, Any]],
    client_field: str,
    identify: Identify | None = None,
    settings_hook: SettingsHook | None = None,
    fault_response: FaultResponder = default_fault_response,
) -> SandboxControl:
    """Add the ``/_sandbox/*`` routes and the stats/faults middleware to ``app``.

    Call it while building the app (before it starts). ``on_seed`` receives
    the non-negative counts posted (missing keys are absent) and the client
    named by ``client_field`` (None when absent), and runs in a worker thread;
    ``on_reset`` gets that client or None (everything). Both raise ValueError
    for a client key they do not accept (a 400). ``identify`` attributes each
    API request to a client for the stats. ``fault_response`` builds the answer
    of an injected status.
    """
    control = SandboxControl(app, fault_response, identify)
    app.add_middleware(_ControlMiddleware, control=control)
    _add_fault_routes(app, control, client_field)
    _add_data_routes(app, control, on_reset, on_seed, client_field)
    _add_settings_route(app, settings_hook)
    return control


def _add_fault_routes(app: FastAPI, control: SandboxControl, client_field: str) -> None:
    """``/_sandbox/faults`` (read and set) and ``/_sandbox/stats``."""

    async def get_faults() -> dict[str, Any]:
        return control.faults.model_dump()

    async def post_faults(request: Request) -> Any:
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            faults = FaultSettings.model_validate(body)
        except ValidationError as exc:
            return _problem(str(exc))
        control.set_faults(faults)
        return faults.model_dump()

    async def get_stats(request: Request) -> dict[str, Any]:
        client = request.query_params.get(client_field) or None
        return {"requests": control.stats(client), "statuses": control.statuses(client)}

    app.add_api_route(f"{CONTROL_PREFIX}/faults", get_faults, methods=["GET"])
    app.add_api_route(f"{CONTROL_PREFIX}/faults", post_faults, methods=["POST"])
    app.add_api_route(f"{CONTROL_PREFIX}/stats", get_stats, methods=["GET"])


def _add_data_routes(
    app: FastAPI,
    control: SandboxControl,
    on_reset: Callable[[str | None], None],
    on_seed: Callable[[dict[str, int], str | None], Mapping[str, Any]],
    client_field: str,
) -> None:
    """``/_sandbox/reset`` and ``/_sandbox/seed``."""

    async def post_reset(request: Request) -> Any:
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        client = _client_of(body, client_field)
        if isinstance(client, JSONResponse):
            return client
        try:
            await asyncio.to_thread(on_reset, client)
        except ValueError as exc:
            return _problem(str(exc))
        control.reset_stats(client)
        if client is None:
            control.set_faults(FaultSettings())
        return {"reset": True}

    async def post_seed(request: Request) -> Any:
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        client = _client_of(body, client_field)
        if isinstance(client, JSONResponse):
            return client
        body.pop(client_field, None)
        counts: dict[str, int] = {}
        for key, value in body.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return _problem(f"'{key}' must be a non-negative integer.")
            counts[key] = value
        try:
            result = await asyncio.to_thread(on_seed, counts, client)
        except ValueError as exc:
            return _problem(str(exc))
        return dict(result)

    app.add_api_route(f"{CONTROL_PREFIX}/reset", post_reset, methods=["POST"])
    app.add_api_route(f"{CONTROL_PREFIX}/seed", post_seed, methods=["POST"])


def _add_settings_route(app: FastAPI, settings_hook: SettingsHook | None) -> None:
    """``/_sandbox/settings``: the simulator's runtime settings, when it has any."""

    async def settings(request: Request) -> Any:
        if settings_hook is None:
            return JSONResponse({"detail": "This simulator has no runtime settings."}, 404)
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            return settings_hook(body)
        except ValueError as exc:
            return _problem(str(exc))

    app.add_api_route(f"{CONTROL_PREFIX}/settings", settings, methods=["GET", "POST"])
