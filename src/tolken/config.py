"""Settings for ``tolken.yaml``: pydantic models (``extra="forbid"``) and the loaders.

Secrets come from the environment through ``${VAR}``; they are held as
:class:`pydantic.SecretStr` so they never print by accident. API keys shorter
than :data:`tolken._redact.MIN_SECRET_LENGTH` (8) characters are refused: a
value that short could not be redacted from messages without mangling them.

A file is in one of two modes. **Single mode** (:class:`TolkenConfig`) names one
PowerOffice client (``poweroffice.client_key``) and one PMS. **Fleet mode**
(:class:`FleetConfig`) has a ``fleet:`` section and no ``client_key``: the
tenants, each with its own client key and PMS credentials, live in the store,
which must then be PostgreSQL. :func:`load_any_config` reads either;
:func:`load_config` and :func:`load_fleet_config` insist on one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tolken._redact import MIN_SECRET_LENGTH as MIN_KEY_LENGTH
from tolken._rest_config import (
    REST_CONNECTOR,
    RestAuth,
    RestBody,
    RestChanges,
    RestEndpoint,
    RestErrors,
    RestIdempotency,
    RestIdentity,
    RestPaging,
    RestResource,
    RestResources,
    RestSettings,
)
from tolken._yaml import expand_env, load_yaml, validate_model
from tolken.errors import ConfigError
from tolken.vocabulary import ConflictPolicy, FlowId

__all__ = [
    "MIN_FLEET_SECRET_LENGTH",
    "REST_CONNECTOR",
    "TENANT_ID_PATTERN",
    "ConflictPolicy",
    "FleetConfig",
    "FleetPMSSettings",
    "FleetSettings",
    "FlowSettings",
    "PMSSettings",
    "PowerOfficeApplicationSettings",
    "PowerOfficeSettings",
    "RestAuth",
    "RestBody",
    "RestChanges",
    "RestEndpoint",
    "RestErrors",
    "RestIdempotency",
    "RestIdentity",
    "RestPaging",
    "RestResource",
    "RestResources",
    "RestSettings",
    "ServeSettings",
    "SyncSettings",
    "TenantSettings",
    "TolkenConfig",
    "load_any_config",
    "load_config",
    "load_fleet_config",
]


class _Strict(BaseModel):
    # Validators are built when a model is first validated, not at import: a process validates
    # one or two of these models (``tolken sync`` never the fleet's), and every CLI command
    # imports them all.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _key_long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_KEY_LENGTH:
        raise ValueError(
            f"is shorter than {MIN_KEY_LENGTH} characters: too short to be a key "
            "tolken can keep out of its messages and logs"
        )
    return value


ApiKey = Annotated[SecretStr, AfterValidator(_key_long_enough)]
"""A credential of a remote system: at least ``MIN_KEY_LENGTH`` (8) characters."""


class PowerOfficeApplicationSettings(_Strict):
    """How to reach PowerOffice Go as an application, for any client: fleet mode's ``poweroffice:``.

    ``requests_per_second`` is the budget of the subscription key.
    """

    base_url: str = "https://goapi.poweroffice.net/v2"
    token_url: str = "https://goapi.poweroffice.net/OAuth/Token"
    application_key: ApiKey
    subscription_key: ApiKey
    requests_per_second: float = Field(default=10.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)
    page_size: int = Field(default=2000, ge=1, le=20000)
    overlap_seconds: float = Field(default=120.0, ge=0)


class PowerOfficeSettings(PowerOfficeApplicationSettings):
    """How to reach one PowerOffice Go client (company)."""

    client_key: ApiKey


class _PMSConnection(_Strict):
    connector: str = "pms"
    change_capture: Literal["changes", "polling"] = "changes"
    timeout_seconds: float = Field(default=30.0, gt=0)
    # The reference PMS (and most APIs) cap list pages at 1000.
    page_size: int = Field(default=500, ge=1, le=1000)
    # Writes in flight at once while creating many records; a 429 or 503 lowers it.
    max_concurrency: int = Field(default=4, ge=1, le=32)
    rest: RestSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _capture_follows_rest(cls, data: Any) -> Any:
        # With connector: rest the section says whether there is a feed; change_capture follows.
        if isinstance(data, dict) and data.get("connector") == REST_CONNECTOR:
            rest = data.get("rest")
            changes = rest.get("changes") if isinstance(rest, dict) else None
            kind = changes.get("type") if isinstance(changes, dict) else None
            if isinstance(rest, RestSettings):
                kind = rest.changes.type
            if "change_capture" not in data:
                return {**data, "change_capture": "changes" if kind == "feed" else "polling"}
        return data

    @model_validator(mode="after")
    def _rest_section(self) -> Self:
        if self.connector == REST_CONNECTOR:
            if self.rest is None:
                raise PydanticCustomError(
                    "rest_section_missing",
                    "pms.connector: rest needs a pms.rest: section describing the PMS's API "
                    "(see docs/pms-rest.md)",
                )
            if self.change_capture == "changes" and self.rest.changes.type != "feed":
                raise PydanticCustomError(
                    "rest_no_feed",
                    "pms.change_capture: changes needs pms.rest.changes.type: feed; "
                    "this PMS is read by {kind}: use change_capture: polling (or leave it out)",
                    {"kind": self.rest.changes.type},
                )
        elif self.rest is not None:
            raise PydanticCustomError(
                "rest_section_unused",
                "pms.rest: is read only with pms.connector: rest (the connector is {name!r})",
                {"name": self.connector},
            )
        return self

    def needs_api_key(self) -> bool:
        """False only for a ``rest`` PMS whose API takes no credentials (``auth.type: none``)."""
        return self.rest is None or self.rest.auth.type != "none"


class PMSSettings(_PMSConnection):
    """How to reach the custom PMS; ``api_key`` may be left out only with ``rest`` auth none."""

    base_url: str
    api_key: ApiKey | None = None

    @model_validator(mode="after")
    def _api_key_present(self) -> Self:
        if self.api_key is None and self.needs_api_key():
            raise PydanticCustomError(
                "missing", "pms.api_key is required (only a rest PMS with auth type none has none)"
            )
        return self

    def api_key_value(self) -> str:
        """The API key's text ("" when the PMS takes none)."""
        return self.api_key.get_secret_value() if self.api_key is not None else ""


class FleetPMSSettings(_PMSConnection):
    """Fleet mode's ``pms:``: what tenants share; each tenant brings its own API key."""

    base_url: str | None = None  # for tenants without a PMS base URL of their own


class FlowSettings(_Strict):
    """Per-flow switches."""

    enabled: bool = True
    create_in_poweroffice: bool = False
    conflict_policy: ConflictPolicy | None = None


class SyncSettings(_Strict):
    """The sync loop."""

    interval_seconds: float = Field(default=60.0, gt=0)
    reconcile_every: int = Field(default=60, ge=1)
    conflict_policy: ConflictPolicy = "newest-wins"
    mass_delete_threshold: float = Field(default=0.10, ge=0, le=1)
    flows: dict[FlowId, FlowSettings] = Field(default_factory=dict)

    def flow(self, flow_id: FlowId) -> FlowSettings:
        return self.flows.get(flow_id, FlowSettings())

    def policy_for(self, flow_id: FlowId) -> ConflictPolicy:
        return self.flow(flow_id).conflict_policy or self.conflict_policy


# serve.token and serve.webhook_secret: shorter secrets are refused at load.
MIN_SECRET_LENGTH = 16


class ServeSettings(_Strict):
    """The ``tolken serve`` process: dashboard, metrics and the PMS webhook receiver."""

    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)
    token: SecretStr | None = Field(
        default=None, json_schema_extra={"minLength": MIN_SECRET_LENGTH}
    )
    public_url: str | None = None
    webhook_secret: SecretStr | None = Field(
        default=None, json_schema_extra={"minLength": MIN_SECRET_LENGTH}
    )

    @field_validator("token", "webhook_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return _long_enough(value)


def _long_enough(value: SecretStr | None) -> SecretStr | None:
    # A short dashboard token or webhook secret can be guessed; refuse it outright.
    if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
        raise PydanticCustomError(
            "secret_too_short",
            "must be at least {length} characters (a random value, e.g. `openssl rand -hex 24`)",
            {"length": MIN_SECRET_LENGTH},
        )
    return value


class TolkenConfig(_Strict):
    """The whole ``tolken.yaml``."""

    store: str = "sqlite:///tolken.db"
    tenant: str = "default"
    poweroffice: PowerOfficeSettings
    pms: PMSSettings
    sync: SyncSettings = Field(default_factory=SyncSettings)
    serve: ServeSettings | None = None
    mapping: Path | None = None

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction and for tests that grep logs."""
        values = [
            self.poweroffice.application_key,
            self.poweroffice.client_key,
            self.poweroffice.subscription_key,
        ]
        if self.pms.api_key is not None:
            values.append(self.pms.api_key)
        if self.serve is not None:
            values += [v for v in (self.serve.token, self.serve.webhook_secret) if v is not None]
        return [v.get_secret_value() for v in values if v.get_secret_value()]


# fleet.secret_key: the passphrase the tenants' credentials are encrypted under.
MIN_FLEET_SECRET_LENGTH = 32

# Tenant ids appear in URLs (/tenants/{id}/...), metric labels and log lines.
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class FleetSettings(_Strict):
    """Fleet mode: the key the tenants' credentials are encrypted under, and the workers."""

    secret_key: SecretStr = Field(json_schema_extra={"minLength": MIN_FLEET_SECRET_LENGTH})
    concurrency: int = Field(default=4, ge=1)  # jobs at once per worker process
    # A worker silent this long is dead: its running jobs go back to the queue for another.
    stalled_after_seconds: float = Field(default=30.0, ge=3)
    # The share of poweroffice.requests_per_second that the other jobs leave to
    # webhook jobs while one of those waits for the budget.
    webhook_reserve: float = Field(default=0.3, ge=0, lt=1)

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        # The encryption key is derived from it: a short passphrase can be guessed offline.
        if len(value.get_secret_value()) < MIN_FLEET_SECRET_LENGTH:
            raise PydanticCustomError(
                "secret_too_short",
                "must be at least {length} characters "
                "(a random passphrase, e.g. `openssl rand -base64 32`)",
                {"length": MIN_FLEET_SECRET_LENGTH},
            )
        return value


class TenantSettings(_Strict):
    """What one tenant of a fleet brings: its PowerOffice client and its PMS credentials.

    ``pms_base_url``, ``interval_seconds`` and ``conflict_policy`` fall back to
    the fleet config's ``pms.base_url``, ``sync.interval_seconds`` and
    ``sync.conflict_policy`` when unset.
    """

    id: str = Field(pattern=TENANT_ID_PATTERN)
    poweroffice_client_key: ApiKey
    pms_api_key: ApiKey
    pms_base_url: str | None = None
    webhook_secret: SecretStr | None = None
    interval_seconds: float | None = Field(default=None, gt=0)
    conflict_policy: ConflictPolicy | None = None

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return _long_enough(value)

    def secrets(self) -> list[str]:
        """The tenant's secret values, for redaction and for tests that grep dumps and logs."""
        values = [self.poweroffice_client_key, self.pms_api_key, self.webhook_secret]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


class FleetConfig(_Strict):
    """A fleet-mode ``tolken.yaml``: one PowerOffice application, many tenants in the store."""

    store: str = Field(json_schema_extra={"pattern": "^postgres"})
    poweroffice: PowerOfficeApplicationSettings
    pms: FleetPMSSettings = Field(default_factory=FleetPMSSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    serve: ServeSettings | None = None
    mapping: Path | None = None
    fleet: FleetSettings

    @field_validator("store")
    @classmethod
    def _postgresql(cls, value: str) -> str:
        # Every worker process on every machine shares the store, its job queue and budget.
        if value.split(":", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres"):
            raise PydanticCustomError(
                "fleet_needs_postgresql",
                "fleet mode needs a PostgreSQL store "
                "(store: postgresql+psycopg://user:password@host/db), not {url}",
                {"url": value.split(":", 1)[0] + ":..."},
            )
        return value

    def tenant_config(self, tenant: TenantSettings) -> TolkenConfig:
        """The single-mode config that syncs ``tenant``: the sync of one tenant is single mode."""
        pms_base_url = tenant.pms_base_url or self.pms.base_url
        if pms_base_url is None:
            raise ConfigError(
                f"tenant {tenant.id} has no PMS base URL and the config has no pms.base_url",
                key="pms.base_url",
            )
        sync = self.sync
        if tenant.interval_seconds is not None or tenant.conflict_policy is not None:
            sync = sync.model_copy(
                update={
                    "interval_seconds": tenant.interval_seconds or sync.interval_seconds,
                    "conflict_policy": tenant.conflict_policy or sync.conflict_policy,
                }
            )
        serve = self.serve
        if tenant.webhook_secret is not None:
            serve = (serve or ServeSettings()).model_copy(
                update={"webhook_secret": tenant.webhook_secret}
            )
        return TolkenConfig(
            store=self.store,
            tenant=tenant.id,
            poweroffice=PowerOfficeSettings(
                **self.poweroffice.model_dump(), client_key=tenant.poweroffice_client_key
            ),
            pms=PMSSettings(
                **self.pms.model_dump(exclude={"base_url"}),
                base_url=pms_base_url,
                api_key=tenant.pms_api_key,
            ),
            sync=sync,
            serve=serve,
            mapping=self.mapping,
        )

    def secrets(self) -> list[str]:
        """Every configured secret value (the tenants' own are in the store)."""
        values = [
            self.poweroffice.application_key,
            self.poweroffice.subscription_key,
            self.fleet.secret_key,
        ]
        if self.serve is not None:
            values += [v for v in (self.serve.token, self.serve.webhook_secret) if v is not None]
        return [v.get_secret_value() for v in values if v.get_secret_value()]


def load_any_config(
    path: Path | str, environ: dict[str, str] | None = None
) -> TolkenConfig | FleetConfig:
    """Read, expand and validate ``tolken.yaml`` in whichever mode it is written.

    A ``fleet:`` section makes it a fleet config; errors name the file, line and key.
    """
    path = Path(path)
    data = load_yaml(path)
    if data is None:
        raise ConfigError("the file is empty", location=str(path))
    data = expand_env(data, path, environ)
    config: TolkenConfig | FleetConfig
    if isinstance(data, dict) and "fleet" in data:
        poweroffice = data.get("poweroffice")
        if isinstance(poweroffice, dict) and "client_key" in poweroffice:
            raise ConfigError(
                "fleet mode keeps each tenant's client key in the store (`tolken tenants add`): "
                "remove poweroffice.client_key, or remove the fleet: section for single mode",
                location=str(path),
                key="poweroffice.client_key",
            )
        if "store" not in data:
            raise ConfigError(
                "fleet mode needs a PostgreSQL store "
                "(store: postgresql+psycopg://user:password@host/db)",
                location=str(path),
                key="store",
            )
        config = validate_model(FleetConfig, data, path)
    else:
        config = validate_model(TolkenConfig, data, path)
    if config.mapping is not None and not config.mapping.is_absolute():
        config = config.model_copy(update={"mapping": (path.parent / config.mapping).resolve()})
    return config


def load_config(path: Path | str, environ: dict[str, str] | None = None) -> TolkenConfig:
    """Read, expand and validate a single-mode ``tolken.yaml``; errors name file, line and key."""
    config = load_any_config(path, environ)
    if isinstance(config, FleetConfig):
        raise ConfigError(
            "this is a fleet config (it has a fleet: section); "
            "this command needs a single-mode config with poweroffice.client_key",
            location=str(path),
            key="fleet",
        )
    return config


def load_fleet_config(path: Path | str, environ: dict[str, str] | None = None) -> FleetConfig:
    """Read, expand and validate a fleet-mode ``tolken.yaml`` (one with a ``fleet:`` section)."""
    config = load_any_config(path, environ)
    if not isinstance(config, FleetConfig):
        raise ConfigError(
            "this is a single-mode config: fleet mode needs a fleet: section "
            "(fleet.secret_key) and no poweroffice.client_key",
            location=str(path),
            key="fleet",
        )
    return config
