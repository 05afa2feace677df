"""Create, read, patch and delete of Departments, Customers and Projects.

Semantics follow reference §5–7 and §10; where the public sources are silent
the choice is written next to the code:

* Customers share one contact-id sequence; ``Number`` is the next free number
  from 10000 when omitted (§6). ``ExternalImportReference``, ``ExternalNumber``
  and ``Number`` are unique (400 with the documented detail text).
* ``MailAddress`` is always an object (the spec's ``ContactAddressDto`` is not
  nullable) with its own ``Id`` and ``LastChangedDateTimeOffset``; an
  address-only change moves the address timestamp and *not* the customer's
  (§4.3, DESIGN §2).
* References (``CustomerId``/``CustomerNo``, ``DepartmentId``/``DepartmentCode``,
  the Id wins) must exist, else 404 titled ``<Entity> validation error(s)``
  (the spec's example). Read-only twins (``DepartmentCode``, ``CustomerNo``)
  follow the referenced record.
* Department ``IsActive`` defaults to true when omitted: the spec's
  "Defaults to false" reads like generated boilerplate (§5 flags it), and a
  department created through the API is meant to be used.
* Department codes and project codes (per parent) are unique [§11.6, inferred].
* A PATCH that changes nothing keeps the timestamps.
* DELETE is refused (409 ``<Entity> conflict``) while a record is referenced:
  a customer by projects, a department by customers or projects, a project by
  sub-projects.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Literal

from tolken.sandbox.poweroffice.db import TABLES, Store, format_ticks
from tolken.sandbox.poweroffice.dtos import ADDRESS, CUSTOMER, DEPARTMENT, PROJECT, EntitySpec
from tolken.sandbox.poweroffice.jsonpatch import apply_patch, patch_view
from tolken.sandbox.poweroffice.problems import ApiError, not_found, validation_error
from tolken.sandbox.poweroffice.validation import (
    check_project_code,
    parse_post_body,
    validate_rules,
)

__all__ = ["SPECS", "Resources", "columns_of"]

SPECS: dict[str, EntitySpec] = {s.path: s for s in (DEPARTMENT, CUSTOMER, PROJECT)}

DEPARTMENT_DEFAULTS: dict[str, Any] = {"IsActive": True}
CUSTOMER_DEFAULTS: dict[str, Any] = {
    "IsPerson": False,
    "ContactGroupIds": [],
    "CurrencyCode": "NOK",
    "IsArchived": False,
    "IsActive": True,
    "IsVatFree": False,
    "SendPaymentReminders": True,
    "DoNotAddLatePaymentFees": False,
    "DoNotAddLatePaymentInterest": False,
    "DoNotAutomatePaymentNotifications": False,
    "TransferToDebtCollectionAgency": True,
    "UseInvoiceFee": True,
}
PROJECT_DEFAULTS: dict[str, Any] = {
    "ProjectStatus": "Active",
    "IsActive": True,
    "IsBillable": True,
    "IsInternal": False,
    "ProjectBillingMethod": "Time",
    "BillableRateSpecification": "Activity",
    "Progress": 0,
    "AllowAllActivities": True,
    "AllowAllEmployees": True,
    "DenyTimeTracking": False,
    "AttachExpenseVouchersWhenBilling": False,
    "ExpenseMarkupEnabled": False,
    "HourlyRateMarkupEnabled": False,
}
_UNSETTABLE_DELIVERY = ("AvtaleGiro", "Efaktura")


def columns_of(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The indexed column values of a stored DTO."""
    if path == "Departments":
        active = doc.get("IsActive")
        return {"code": doc.get("Code"), "name": doc.get("Name"), "is_active": active}
    if path == "Customers":
        return {
            "number": doc.get("Number"),
            "ext_ref": doc.get("ExternalImportReference"),
            "ext_no": doc.get("ExternalNumber"),
            "department_id": doc.get("DepartmentId"),
        }
    return {
        "code": doc.get("Code"),
        "name": doc.get("Name"),
        "customer_id": doc.get("CustomerId"),
        "department_id": doc.get("DepartmentId"),
        "status": doc.get("ProjectStatus"),
    }


def empty_address(address_id: int, stamp: str) -> dict[str, Any]:
    """A ``ContactAddressDto`` with no content."""
    address: dict[str, Any] = dict.fromkeys(ADDRESS.read)
    address.update(Id=address_id, LastChangedDateTimeOffset=stamp)
    return address


def _one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


class Resources:
    """The business operations; each runs in one SQLite transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reads ----------------------------------------------------------------
    def get(self, path: str, entity_id: int) -> dict[str, Any]:
        """The DTO, or 404."""
        doc = self.store.get_doc(path, entity_id)
        if doc is None:
            raise not_found(SPECS[path].name, entity_id)
        return doc

    # -- create ---------------------------------------------------------------
    def create(self, path: str, body: Any) -> dict[str, Any]:
        """POST: the created DTO, or an ApiError (nothing stored)."""
        spec = SPECS[path]
        fields = parse_post_body(spec, body)
        doc: dict[str, Any] = dict.fromkeys(spec.read)
        with self.store.transaction() as conn:
            if path == "Departments":
                self._new_department(conn, doc, fields)
            elif path == "Customers":
                self._new_customer(conn, doc, fields)
            else:
                self._new_project(conn, doc, fields)
            validate_rules(spec, doc, creating=True)
            tick = self.store.clock.tick()
            stamp = format_ticks(tick)
            for key in ("CreatedDateTimeOffset", "ContactCreatedDateTimeOffset"):
                if key in doc:
                    doc[key] = stamp
            if path == "Customers":
                doc["CustomerCreatedDateTimeOffset"] = stamp
                doc["MailAddress"]["LastChangedDateTimeOffset"] = stamp
            doc["LastChangedDateTimeOffset"] = stamp
            self.store.write(
                conn, path, doc, columns_of(path, doc), created=tick, last_changed=tick
            )
            self.store.save_clock(conn)
        return doc

    def _assign(self, spec: EntitySpec, doc: dict[str, Any], fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if key in spec.read and spec.read[key] != "address":
                doc[key] = value

    def _new_department(
        self, conn: sqlite3.Connection, doc: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        doc.update(DEPARTMENT_DEFAULTS)
        self._assign(DEPARTMENT, doc, fields)
        if doc["IsActive"] is None:
            doc["IsActive"] = True
        self._check_code_free(conn, "Department", doc.get("Code"), None)
        doc["Id"] = self.store.next_value(conn, "department_id")

    def _new_customer(
        self, conn: sqlite3.Connection, doc: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        doc.update(CUSTOMER_DEFAULTS)
        self._assign(CUSTOMER, doc, fields)
        for key, value in CUSTOMER_DEFAULTS.items():
            if doc[key] is None:
                doc[key] = value
        self._resolve_department(conn, CUSTOMER, doc, fields)
        if doc["Number"] is None:
            doc["Number"] = self.store.next_customer_number(conn)
        self._check_customer_unique(conn, doc, None)
        self._delivery_types(doc, explicit=set(fields))
        if doc.get("NationalIdNumber"):
            doc["NationalIdNumber"] = "hidden"
        doc["Id"] = self.store.next_value(conn, "contact_id")
        doc["SubledgerAccountId"] = self.store.next_value(conn, "subledger_id")
        address = empty_address(self.store.next_value(conn, "address_id"), "")
        given = fields.get("MailAddress")
        if given is not None:
            address.update(given)
            if not address.get("CountryCode"):
                address["CountryCode"] = "NO"
        doc["MailAddress"] = address

    def _new_project(
        self, conn: sqlite3.Connection, doc: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        doc.update(PROJECT_DEFAULTS)
        self._assign(PROJECT, doc, fields)
        for key, value in PROJECT_DEFAULTS.items():
            if doc[key] is None:
                doc[key] = value
        code = fields.get("Code")
        check_project_code(code)
        parent = self._parent(conn, fields)
        inherited = set()
        if parent is not None:
            if parent.get("ParentProjectId"):
                raise validation_error("Project", "Sub-projects can only be one level deep.")
            doc["ParentProjectId"], doc["ParentProjectCode"] = parent["Id"], parent["Code"]
            for key in ("CustomerId", "DepartmentId"):
                if fields.get(key) is None and fields.get(key.replace("Id", "No")) is None:
                    doc[key] = parent.get(key)
                    inherited.add(key)
        self._resolve_customer(conn, doc, fields)
        self._resolve_department(conn, PROJECT, doc, fields)
        if "CustomerId" in inherited:
            doc["CustomerNo"] = None
        if "DepartmentId" in inherited:
            doc["DepartmentCode"] = None
        doc["Code"] = self._project_code(conn, code, parent)
        doc["Id"] = self.store.next_value(conn, "project_id")

    def _parent(self, conn: sqlite3.Connection, fields: dict[str, Any]) -> dict[str, Any] | None:
        if fields.get("ParentProjectId") is not None:
            raw = _one(conn, "SELECT doc FROM projects WHERE id = ?", (fields["ParentProjectId"],))
            if raw is None:
                raise ApiError(
                    404,
                    "Project validation error(s)",
                    f"Project with id = {fields['ParentProjectId']} not found.",
                )
            return dict(json.loads(raw))
        if fields.get("ParentProjectCode"):
            code = fields["ParentProjectCode"]
            raw = _one(conn, "SELECT doc FROM projects WHERE code = ?", (code,))
            if raw is None:
                raise ApiError(
                    404, "Project validation error(s)", f"Project with code = '{code}' not found."
                )
            return dict(json.loads(raw))
        return None

    def _project_code(
        self, conn: sqlite3.Connection, code: str | None, parent: dict[str, Any] | None
    ) -> str:
        prefix = f"{parent['Code']}." if parent else ""
        if code is None or not code.strip():
            # Go numbers projects when no code is given; continue after the largest
            # numeric code at this level.
            rows = conn.execute(
                "SELECT code FROM projects WHERE code LIKE ? ESCAPE '\\'",
                (prefix.replace("%", "\\%").replace("_", "\\_") + "%",),
            ).fetchall()
            numbers = [int(c[len(prefix) :]) for (c,) in rows if c[len(prefix) :].isdigit()]
            code = str(max(numbers, default=0) + 1)
        full = prefix + code
        self._check_code_free(conn, "Project", full, None)
        return full

    # -- references and uniqueness ------------------------------------------------
    def _resolve_department(
        self,
        conn: sqlite3.Connection,
        spec: EntitySpec,
        doc: dict[str, Any],
        fields: dict[str, Any],
    ) -> None:
        title = f"{spec.name} validation error(s)"
        if doc.get("DepartmentId") is not None:
            code = conn.execute(
                "SELECT code FROM departments WHERE id = ?", (doc["DepartmentId"],)
            ).fetchone()
            if code is None:
                raise ApiError(404, title, f"Department with id = {doc['DepartmentId']} not found.")
            doc["DepartmentCode"] = code[0]
        elif fields.get("DepartmentCode"):
            code = fields["DepartmentCode"]
            found = _one(conn, "SELECT id FROM departments WHERE code = ?", (code,))
            if found is None:
                raise ApiError(404, title, f"Department with code = '{code}' not found.")
            doc["DepartmentId"], doc["DepartmentCode"] = found, code
        else:
            doc["DepartmentCode"] = None

    def _resolve_customer(
        self, conn: sqlite3.Connection, doc: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        title = "Project validation error(s)"
        if doc.get("CustomerId") is not None:
            number = conn.execute(
                "SELECT number FROM customers WHERE id = ?", (doc["CustomerId"],)
            ).fetchone()
            if number is None:
                raise ApiError(404, title, f"Customer with id = {doc['CustomerId']} not found.")
            doc["CustomerNo"] = number[0]
        elif fields.get("CustomerNo") is not None:
            number = fields["CustomerNo"]
            found = _one(conn, "SELECT id FROM customers WHERE number = ?", (number,))
            if found is None:
                raise ApiError(404, title, f"Customer with number = {number} not found.")
            doc["CustomerId"], doc["CustomerNo"] = found, number
        else:
            doc["CustomerNo"] = None

    def _check_code_free(
        self,
        conn: sqlite3.Connection,
        entity: Literal["Department", "Project"],
        code: str | None,
        own_id: int | None,
    ) -> None:
        """A department's or project's ``Code`` (when set) is used by no other of its kind."""
        if code is None:
            return
        table = "departments" if entity == "Department" else "projects"
        other = _one(conn, f"SELECT id FROM {table} WHERE code = ?", (code,))
        if other is not None and other != own_id:
            raise validation_error(
                entity, f"Code is already in use. '{code}' is used on Id = {other}."
            )

    def _check_customer_unique(
        self, conn: sqlite3.Connection, doc: dict[str, Any], own_id: int | None
    ) -> None:
        checks = (
            ("ExternalImportReference", "ext_ref", "'{}'"),
            ("ExternalNumber", "ext_no", "{}"),
            ("Number", "number", "{}"),
        )
        for field, column, shown in checks:
            value = doc.get(field)
            if value is None:
                continue
            other = _one(conn, f"SELECT id FROM customers WHERE {column} = ?", (value,))
            if other is not None and other != own_id:
                raise validation_error(
                    "Customer",
                    f"{field} is already in use. {shown.format(value)} is used on "
                    f"(contact) Id = {other}.",
                )

    def _delivery_types(
        self, doc: dict[str, Any], explicit: set[str], *, defaults: bool = True
    ) -> None:
        """Defaults (on create) and rules of explicitly set delivery types (reference §6)."""
        has_mail = bool(doc.get("EmailAddress") or doc.get("InvoiceEmailAddress"))
        has_reminder_mail = bool(doc.get("EmailAddress") or doc.get("PaymentReminderEmailAddress"))
        for field, mail in (
            ("InvoiceDeliveryType", has_mail),
            ("ReminderDeliveryType", has_reminder_mail),
            ("NoticeOfDebtCollectionDeliveryType", has_reminder_mail),
        ):
            value = doc.get(field)
            if field not in explicit or value is None:
                if defaults or value is None:
                    doc[field] = "PdfByEmail" if mail else "Print"
                continue
            if value in _UNSETTABLE_DELIVERY:
                raise validation_error("Customer", f"{field} '{value}' cannot be set via the API.")
            if value == "PdfByEmail" and not mail:
                raise validation_error(
                    "Customer", f"{field} 'PdfByEmail' requires an e-mail address on the customer."
                )
            if value == "EHF" and not doc.get("OrganizationNumber"):
                raise validation_error(
                    "Customer", "InvoiceDeliveryType 'EHF' requires an organization number."
                )

    # -- patch ------------------------------------------------------------------
    def patch(self, path: str, entity_id: int, operations: Any) -> dict[str, Any]:
        """PATCH: the updated DTO, or an ApiError (nothing stored)."""
        spec = SPECS[path]
        with self.store.transaction() as conn:
            raw = _one(conn, f"SELECT doc FROM {TABLES[path][0]} WHERE id = ?", (entity_id,))
            if raw is None:
                raise not_found(spec.name, entity_id)
            doc: dict[str, Any] = json.loads(raw)
            before = patch_view(spec, doc)
            after = apply_patch(spec, before, operations)
            changed = {f for f in spec.patch if f != "MailAddress" and after[f] != before[f]}
            address_changed = "MailAddress" in spec.patch and (
                after["MailAddress"] != before["MailAddress"]
            )
            if not changed and not address_changed:
                return doc
            for field in changed:
                doc[field] = after[field]
            if address_changed:
                doc["MailAddress"].update(after["MailAddress"])
            self._after_patch(conn, path, doc, changed)
            validate_rules(spec, doc, creating=False)
            tick = self.store.clock.tick()
            if address_changed:
                doc["MailAddress"]["LastChangedDateTimeOffset"] = format_ticks(tick)
            row = conn.execute(
                f"SELECT created, last_changed FROM {TABLES[path][0]} WHERE id = ?", (entity_id,)
            ).fetchone()
            last_changed = row[1]
            if changed:
                # The customer timestamp excludes sub-entities (reference §4.3).
                last_changed = tick
                doc["LastChangedDateTimeOffset"] = format_ticks(tick)
            self.store.write(
                conn, path, doc, columns_of(path, doc), created=row[0], last_changed=last_changed
            )
            self.store.save_clock(conn)
        return doc

    def _after_patch(
        self, conn: sqlite3.Connection, path: str, doc: dict[str, Any], changed: set[str]
    ) -> None:
        if path == "Departments":
            if "Code" in changed:
                self._check_code_free(conn, "Department", doc["Code"], doc["Id"])
                for table in ("customers", "projects"):
                    conn.execute(
                        f"UPDATE {table} SET doc = json_set(doc, '$.DepartmentCode', ?) "
                        "WHERE department_id = ? AND json_extract(doc, '$.DepartmentCode') "
                        "IS NOT NULL",
                        (doc["Code"], doc["Id"]),
                    )
            return
        spec = SPECS[path]
        if "DepartmentId" in changed:
            self._resolve_department(conn, spec, doc, {})
        if path == "Customers":
            if "Number" in changed:
                if doc["Number"] is None:
                    raise validation_error("Customer", "Number cannot be empty.")
                conn.execute(
                    "UPDATE projects SET doc = json_set(doc, '$.CustomerNo', ?) "
                    "WHERE customer_id = ? AND json_extract(doc, '$.CustomerNo') IS NOT NULL",
                    (doc["Number"], doc["Id"]),
                )
            self._check_customer_unique(conn, doc, doc["Id"])
            explicit = {f for f in changed if f.endswith("DeliveryType")}
            self._delivery_types(doc, explicit=explicit, defaults=False)
            return
        if "CustomerId" in changed:
            self._resolve_customer(conn, doc, {})
        if "ParentProjectId" in changed and doc["ParentProjectId"] is not None:
            parent = self._parent(conn, {"ParentProjectId": doc["ParentProjectId"]})
            doc["ParentProjectCode"] = parent["Code"] if parent else None
        if "Code" in changed:
            check_project_code(doc["Code"])
            if doc["Code"] is None or not doc["Code"].strip():
                raise validation_error("Project", "Code cannot be empty.")
            prefix = f"{doc['ParentProjectCode']}." if doc.get("ParentProjectCode") else ""
            doc["Code"] = prefix + doc["Code"]
            self._check_code_free(conn, "Project", doc["Code"], doc["Id"])

    # -- delete -----------------------------------------------------------------
    def delete(self, path: str, entity_id: int) -> None:
        """DELETE: 404 when absent, 409 while referenced."""
        spec = SPECS[path]
        users = {
            "Departments": (
                "SELECT 1 FROM customers WHERE department_id = ?1 "
                "UNION ALL SELECT 1 FROM projects WHERE department_id = ?1 LIMIT 1"
            ),
            "Customers": "SELECT 1 FROM projects WHERE customer_id = ?1 LIMIT 1",
            "Projects": (
                "SELECT 1 FROM projects WHERE json_extract(doc, '$.ParentProjectId') = ?1 LIMIT 1"
            ),
        }[path]
        with self.store.transaction() as conn:
            if _one(conn, f"SELECT 1 FROM {TABLES[path][0]} WHERE id = ?", (entity_id,)) is None:
                raise not_found(spec.name, entity_id)
            if conn.execute(users, (entity_id,)).fetchone() is not None:
                raise ApiError(
                    409,
                    f"{spec.name} conflict",
                    f"{spec.name} with id = {entity_id} is in use and cannot be deleted.",
                )
            self.store.delete(conn, path, entity_id)
