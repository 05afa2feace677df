"""Settings for ``tolken.yaml``: pydantic models (``extra="forbid"``) and the loader.

Secrets come from the environment through ``${VAR}``; they are held as
:class:`pydantic.SecretStr` so they never print by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from tolken._yaml import expand_env, load_yaml, validate_model
from tolken.errors import ConfigError
from tolken.vocabulary import ConflictPolicy, FlowId

__all__ = [
    "ConflictPolicy",
    "FlowSettings",
    "PMSSettings",
    "PowerOfficeSettings",
    "ServeSettings",
    "SyncSettings",
    "TolkenConfig",
    "load_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PowerOfficeSettings(_Strict):
    """How to reach one PowerOffice Go client (company)."""

    base_url: str = "https://goapi.poweroffice.net/v2"
    token_url: str = "https://goapi.poweroffice.net/OAuth/Token"
    application_key: SecretStr
    client_key: SecretStr
    subscription_key: SecretStr
    requests_per_second: float = Field(default=10.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)
    page_size: int = Field(default=5000, ge=1, le=20000)
    overlap_seconds: float = Field(default=120.0, ge=0)


class PMSSettings(_Strict):
    """How to reach the custom PMS."""

    base_url: str
    api_key: SecretStr
    connector: str = "pms"
    change_capture: Literal["changes", "polling"] = "changes"
    timeout_seconds: float = Field(default=30.0, gt=0)
    # The reference PMS (and most APIs) cap list pages at 1000.
    page_size: int = Field(default=500, ge=1, le=1000)


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
        # A short dashboard token or webhook secret can be guessed; refuse it outright.
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise PydanticCustomError(
                "secret_too_short",
                "must be at least {length} characters "
                "(a random value, e.g. `openssl rand -hex 24`)",
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
            self.pms.api_key,
        ]
        if self.serve is not None:
            values += [v for v in (self.serve.token, self.serve.webhook_secret) if v is not None]
        return [v.get_secret_value() for v in values if v.get_secret_value()]


def load_config(path: Path | str, environ: dict[str, str] | None = None) -> TolkenConfig:
    """Read, expand and validate ``tolken.yaml``; errors name the file, line and key."""
    path = Path(path)
    data = load_yaml(path)
    if data is None:
        raise ConfigError("the file is empty", location=str(path))
    data = expand_env(data, path, environ)
    config = validate_model(TolkenConfig, data, path)
    if config.mapping is not None and not config.mapping.is_absolute():
        config = config.model_copy(update={"mapping": (path.parent / config.mapping).resolve()})
    return config
