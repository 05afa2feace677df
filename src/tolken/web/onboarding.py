"""Onboarding PowerOffice clients from the fleet dashboard: start, consent, the callback.

1. On the tenants page a person (dashboard token, CSRF token) posts the
   new tenant's PMS API key, and optionally its PMS base URL and the client's
   organisation number, to ``POST /onboarding/start`` (JSON twin
   ``POST /api/onboarding/start``). tolken calls PowerOffice's Onboarding
   Initiate (:func:`tolken.fleet.initiate_onboarding`) with
   ``RedirectUri = {serve.public_url}/onboarding/callback?state=…`` and sends
   the browser to PowerOffice's consent page.
2. The person consents in PowerOffice Go; PowerOffice redirects the browser to
   ``/onboarding/callback?state=…&status=Success&token=<onboarding token>``.
3. The callback opens the state, finalises the onboarding
   (:func:`tolken.fleet.finalize_onboarding`: one tenant per onboarded client,
   its id from the client's name, as ``tolken tenants onboard --finalize``
   makes them) with the PMS settings of step 1 (the config's ``pms.base_url``
   when none was given), and gives each a new random webhook secret for
   ``/webhooks/pms/{id}``. One client: the tenant is due at once. Several clients under one
   consent share the one PMS API key given, which would sync them all into
   one PMS account: they are added **paused**, and the page says to give each
   its own key before resuming.

The callback needs no dashboard token (PowerOffice's redirect carries no
SameSite=Strict cookie); it is authenticated by the state instead: a Fernet
token (authenticated encryption, ``cryptography``) under a key derived from
``fleet.secret_key``, made by step 1 only, valid for an hour (as long as
PowerOffice's temporary URL), holding a random nonce and the PMS settings (so
the PMS API key travels encrypted, never in clear). Each nonce is taken once,
through the store's replay cache, so a replayed callback is refused (also by
another serve process); the onboarding token itself is single-use at PowerOffice.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.concurrency import run_in_threadpool

from tolken.errors import TolkenError
from tolken.fleet import Fleet, finalize_onboarding, initiate_onboarding
from tolken.logging import Redactor, get_logger
from tolken.store import Tenant

__all__ = ["CALLBACK_PATH", "STATE_TTL_SECONDS", "Onboarding", "OnboardingRequest"]

_log = get_logger("tolken.web")
CALLBACK_PATH = "/onboarding/callback"
STATE_TTL_SECONDS = 3600  # PowerOffice's temporary URL is valid for an hour
# The replay cache's scope for onboarding nonces: no tenant id starts with "_".
_NONCES = "_onboarding"


class OnboardingRequest(BaseModel):
    """What a person gives to start an onboarding (the form, or the JSON twin's body)."""

    model_config = ConfigDict(extra="forbid")

    pms_api_key: SecretStr = Field(min_length=8)
    pms_base_url: str | None = None
    organization_number: str | None = None


def _state_key(secret_key: SecretStr) -> Fernet:
    # Its own key, not the tenants' one: a state can never open a stored credential.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tolken onboarding state")
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret_key.get_secret_value().encode())))


class Onboarding:
    """The onboarding routes of one fleet app, and the HTTP client they call PowerOffice with."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fleet = fleet
        self._redactor = redactor
        self._fernet = _state_key(fleet.config.fleet.secret_key)
        self._clock = clock
        serve = fleet.config.serve
        self._public_url = serve.public_url if serve else None
        self._listening: str | None = None

    def listening_at(self, url: str) -> None:
        """Where the app listens: the callback's address when ``serve.public_url`` is unset."""
        self._listening = url

    def callback_url(self) -> str:
        base = self._public_url or self._listening
        if base is None:
            raise HTTPException(503, "the dashboard does not know its address (serve.public_url)")
        return base.rstrip("/") + CALLBACK_PATH

    # -- step 1 ----------------------------------------------------------------------

    def start(self, request: OnboardingRequest) -> str:
        """Initiate an onboarding for ``request``; the URL where a person consents."""
        if request.pms_base_url is None and self._fleet.config.pms.base_url is None:
            raise HTTPException(400, "give the PMS base URL (the config has no pms.base_url)")
        if self._redactor is not None:
            self._redactor.add(request.pms_api_key.get_secret_value())
        state = {
            "nonce": secrets.token_urlsafe(16),
            "pms_api_key": request.pms_api_key.get_secret_value(),
            "pms_base_url": request.pms_base_url,
        }
        now = int(self._clock())
        sealed = self._fernet.encrypt_at_time(json.dumps(state).encode(), now).decode("ascii")
        redirect = f"{self.callback_url()}?state={sealed}"
        consent = initiate_onboarding(
            self._fleet.config, redirect, organization_number=request.organization_number
        )
        _log.info("onboarding initiated")
        return consent.url

    # -- step 3 ----------------------------------------------------------------------

    def _open(self, sealed: str) -> dict[str, Any]:
        now = int(self._clock())
        try:
            raw = self._fernet.decrypt_at_time(sealed.encode("ascii"), STATE_TTL_SECONDS, now)
            state: dict[str, Any] = json.loads(raw)
            issued = self._fernet.extract_timestamp(sealed.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise HTTPException(
                400,
                "this onboarding link is not one this dashboard started, or it is more than "
                "an hour old: start the onboarding again from the tenants page",
            ) from None
        nonces = self._fleet.store.for_tenant(_NONCES)
        if not nonces.remember_delivery(str(state["nonce"]), issued, now - STATE_TTL_SECONDS):
            raise HTTPException(409, "this onboarding was finished already (the link was used)")
        return state

    def finish(self, sealed: str, status: str | None, token: str | None) -> dict[str, Any]:
        """Check the state, finalise the onboarding and add the tenants; the page's data."""
        state = self._open(sealed)
        if status != "Success" or not token:
            raise HTTPException(
                400, f"PowerOffice did not report a consent (status {status or 'missing'})"
            )
        try:
            added = finalize_onboarding(
                self._fleet,
                token,
                pms_api_key=SecretStr(str(state["pms_api_key"])),
                pms_base_url=state.get("pms_base_url"),
            )
        except TolkenError as exc:
            # Not finished: the same link may be followed again (PowerOffice's token decides).
            self._fleet.store.for_tenant(_NONCES).forget_delivery(str(state["nonce"]))
            _log.warning("onboarding finalize failed", error=str(exc))
            raise HTTPException(
                502, f"PowerOffice refused to finalise the onboarding: {exc}"
            ) from None
        # One PMS key for several clients would put them all into one PMS account.
        paused = len(added) > 1
        rows = [self._settle(tenant, paused=paused) for tenant in added]
        _log.info("onboarding finished", tenants=[t["id"] for t in rows], paused=paused)
        return {"tenants": rows, "paused": paused}

    def _settle(self, tenant: Tenant, *, paused: bool) -> dict[str, Any]:
        """Pause the tenant when it must wait for its own PMS key; give it a webhook secret."""
        registry = self._fleet.registry
        if paused:
            registry.pause(tenant.id)
        secret = SecretStr(secrets.token_urlsafe(32))
        if self._redactor is not None:
            self._redactor.add(secret.get_secret_value())
        registry.update(tenant.settings.model_copy(update={"webhook_secret": secret}))
        return {
            "id": tenant.id,
            "paused": paused,
            "pages": f"/tenants/{tenant.id}/",
            "webhook_path": f"/webhooks/pms/{tenant.id}",
        }

    # -- routes ----------------------------------------------------------------------

    def add_routes(self, app: FastAPI, templates: Jinja2Templates) -> None:
        """``POST /onboarding/start`` (+ JSON twin) and ``GET /onboarding/callback``."""

        @app.post("/onboarding/start")
        async def start_form(
            pms_api_key: str = Form(...),
            pms_base_url: str = Form(""),
            organization_number: str = Form(""),
        ) -> Response:
            request = _request(
                pms_api_key=pms_api_key,
                pms_base_url=pms_base_url or None,
                organization_number=organization_number or None,
            )
            url = await run_in_threadpool(self._start_or_502, request)
            return RedirectResponse(url, status_code=303)

        @app.post("/api/onboarding/start")
        async def start_api(request: Request) -> JSONResponse:
            try:
                body = await request.json()
            except ValueError:
                raise HTTPException(400, "the body is not JSON") from None
            started = _request(**body) if isinstance(body, dict) else _request()
            url = await run_in_threadpool(self._start_or_502, started)
            return JSONResponse({"consent_url": url, "callback": self.callback_url()}, 201)

        @app.get(CALLBACK_PATH)
        async def callback(
            request: Request,
            state: str = "",
            status: str | None = None,
            token: str | None = None,
        ) -> Response:
            data = await run_in_threadpool(self.finish, state, status, token)
            return templates.TemplateResponse(
                request,
                "onboarded.html",
                {
                    **data,
                    "title": "Clients onboarded",
                    "tenant": None,
                    "base": "",
                    "here": CALLBACK_PATH,
                    "api_path": "/api/tenants",
                    "now": self._fleet.store.now(),
                },
            )

    def _start_or_502(self, request: OnboardingRequest) -> str:
        try:
            return self.start(request)
        except TolkenError as exc:
            _log.warning("onboarding initiate failed", error=str(exc))
            raise HTTPException(
                502, f"PowerOffice refused to start the onboarding: {exc}"
            ) from None


def _request(**values: Any) -> OnboardingRequest:
    try:
        return OnboardingRequest.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise HTTPException(400, f"cannot start an onboarding: {problems}") from None
