"""Load a mapping file (or the built-in default) into validated models.

Beyond the models' own rules, every field a mapping names must exist: a
PowerOffice path in the spec's DTOs of the flow's resource, and a PMS path in
the PMS contract's record (DESIGN §2), both from :mod:`.known_fields`. A field
that does not exist would otherwise park every record at the first sync.
The PMS check applies to the built-in ``pms`` connector; a custom connector
(``pms.connector`` in tolken.yaml) speaks for its own record shape, so its
mapping's PMS fields are not checked (``pms_contract=False``).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from tolken._yaml import expand_env, line_of, load_packaged_yaml, load_yaml, validate_model
from tolken.errors import ConfigError
from tolken.mapping.known_fields import PMS_CONTRACT_FIELDS, POWEROFFICE_FIELDS
from tolken.mapping.models import Mapping

__all__ = [
    "BUILTIN_PMS_CONNECTOR",
    "DEFAULT_MAPPING_PATH",
    "default_mapping",
    "load_mapping",
    "mapping_path_from_config",
    "pms_contract_applies",
]

BUILTIN_PMS_CONNECTOR = "pms"
"""The connector that speaks the PMS contract, whose fields a mapping is checked against."""

DEFAULT_MAPPING_PATH = Path(__file__).with_name("default.yaml")


def load_mapping(path: Path | str | None = None, *, pms_contract: bool = True) -> Mapping:
    """The mapping in ``path``, or the built-in default for None.

    A bad file raises :class:`~tolken.errors.ConfigError` naming the file, line
    and reason, a field that does not exist included; ``pms_contract=False``
    leaves the PMS fields unchecked (a custom PMS connector).
    """
    if path is None:
        return default_mapping()
    return _load(Path(path), pms_contract=pms_contract)


@cache
def default_mapping() -> Mapping:
    """The built-in mapping of DESIGN §3 (parsed once)."""
    return _load(DEFAULT_MAPPING_PATH, builtin=True)


def _load(path: Path, *, pms_contract: bool = True, builtin: bool = False) -> Mapping:
    # The built-in file is tolken's own (its test loads it both ways): no line numbers needed.
    data = load_packaged_yaml(path) if builtin else load_yaml(path)
    if data is None:
        raise ConfigError("the mapping file is empty", location=str(path))
    mapping = validate_model(Mapping, data, path)
    for loc, problem in _unknown_fields(mapping, pms_contract=pms_contract):
        line = line_of(data, loc)
        raise ConfigError(
            problem,
            location=f"{path}:{line}" if line else str(path),
            key=".".join(str(part) for part in loc),
        )
    return mapping


def _unknown_fields(mapping: Mapping, *, pms_contract: bool) -> Iterator[tuple[list[Any], str]]:
    """``(where in the file, what is wrong)`` for every resource or field that does not exist."""
    po_resources = {name.casefold(): name for name in POWEROFFICE_FIELDS}
    for flow_id, flow in mapping.flows.items():
        at: list[Any] = ["flows", flow_id]
        resource = po_resources.get(flow.poweroffice.casefold())
        if resource is None:
            known = ", ".join(POWEROFFICE_FIELDS)
            yield (
                [*at, "poweroffice"],
                f"PowerOffice has no resource {flow.poweroffice!r}; known: {known}",
            )
            continue
        po_fields = {name.casefold() for name in POWEROFFICE_FIELDS[resource]}
        for i, prop in enumerate(flow.properties):
            if prop.poweroffice is not None and prop.poweroffice.casefold() not in po_fields:
                yield (
                    [*at, "properties", i, "poweroffice"],
                    f"PowerOffice {resource} has no field {prop.poweroffice!r} "
                    f"(not in the PowerOffice Go v2 spec)",
                )
        if not pms_contract:
            continue
        pms_fields = PMS_CONTRACT_FIELDS.get(flow.pms)
        if pms_fields is None:
            known = ", ".join(PMS_CONTRACT_FIELDS)
            yield [*at, "pms"], f"the PMS contract has no resource {flow.pms!r}; known: {known}"
            continue
        for i, prop in enumerate(flow.properties):
            if prop.pms not in pms_fields:
                yield (
                    [*at, "properties", i, "pms"],
                    f"a PMS {flow.pms} record has no field {prop.pms!r} (not in the PMS contract)",
                )
        for field in flow.pms_filter:
            if field not in pms_fields:
                yield (
                    [*at, "pms_filter", field],
                    f"a PMS {flow.pms} record has no field {field!r} (not in the PMS contract)",
                )


def mapping_path_from_config(config_path: Path) -> Path | None:
    """Only the ``mapping:`` key of a tolken.yaml, resolved against the config's folder.

    For commands that need the mapping but no connection (``tolken docs``), so
    that secrets missing from the environment do not get in the way.
    """
    data = load_yaml(config_path)
    if data is None or not hasattr(data, "get"):
        raise ConfigError("expected a mapping of settings", location=str(config_path))
    if data.get("mapping") is None:
        return None
    value = expand_env({"mapping": data["mapping"]}, config_path)["mapping"]
    if not isinstance(value, str) or not value:
        line = data.lc.key("mapping")[0] + 1
        raise ConfigError(
            "expected the path of a mapping file", location=f"{config_path}:{line}", key="mapping"
        )
    mapping = Path(value)
    return mapping if mapping.is_absolute() else (config_path.parent / mapping).resolve()


def pms_contract_applies(config_path: Path) -> bool:
    """True when the tolken.yaml at ``config_path`` uses the built-in PMS connector.

    Reads only ``pms.connector`` (no secrets needed), like :func:`mapping_path_from_config`.
    """
    data = load_yaml(config_path)
    pms = data.get("pms") if isinstance(data, dict) else None
    if not isinstance(pms, dict):
        return True
    return bool(pms.get("connector", BUILTIN_PMS_CONNECTOR) == BUILTIN_PMS_CONNECTOR)
