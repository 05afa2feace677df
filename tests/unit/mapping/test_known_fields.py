"""The fields a mapping may name stay equal to the PowerOffice spec tables and the PMS contract."""

from __future__ import annotations

from tolken.connectors.poweroffice import _schema
from tolken.mapping.known_fields import PMS_CONTRACT_FIELDS, POWEROFFICE_FIELDS
from tolken.sandbox.pms import schema as pms_schema


def test_poweroffice_fields_are_the_client_dto_tables() -> None:
    """Every resource's read, create and patch fields (and MailAddress's) are known, no more."""
    expected = {}
    for name, spec in _schema.RESOURCES.items():
        fields = set(spec.read | spec.post | spec.patch)
        if "MailAddress" in fields:
            address = _schema.ADDRESS_READ | _schema.ADDRESS_PATCH
            fields |= {f"MailAddress.{field}" for field in address}
        expected[name] = frozenset(fields)
    assert expected == POWEROFFICE_FIELDS


def test_pms_fields_are_the_contract_record_shapes() -> None:
    """Every contract field, read-only and address lines included, is known, no more."""
    expected = {}
    for collection, resource in pms_schema.COLLECTIONS.items():
        specs = pms_schema.FIELDS[resource]
        fields = {spec.name for spec in specs} | set(pms_schema.READ_ONLY_FIELDS)
        if any(spec.type == "address" for spec in specs):
            fields |= {f"address.{line}" for line in pms_schema.ADDRESS_FIELDS}
        expected[collection] = frozenset(fields)
    assert expected == PMS_CONTRACT_FIELDS
