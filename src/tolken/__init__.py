"""tolken: two-way sync between PowerOffice Go and a custom project-management system."""

from tolken.config import TolkenConfig, load_config
from tolken.connectors.base import Connector, RemoteRecord
from tolken.errors import (
    AuthError,
    ConfigError,
    Conflict,
    Fatal,
    RecordError,
    Retriable,
    TolkenError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "Conflict",
    "Connector",
    "Fatal",
    "RecordError",
    "RemoteRecord",
    "Retriable",
    "TolkenConfig",
    "TolkenError",
    "__version__",
    "load_config",
]
