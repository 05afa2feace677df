"""Field tables of the PowerOffice Go v2 DTOs the client reads and writes.

Copied from the public spec subset (``tests/data/poweroffice-go-v2-dept-cust-proj.subset.json``;
a unit test keeps the two in step) as plain data, because the client must not
read test data or import the sandbox at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_LENGTH", "RESOURCES", "ResourceSpec", "max_lengths", "resource_spec"]


def _fields(names: str) -> frozenset[str]:
    return frozenset(names.split())


DEPARTMENT_READ: Final = _fields(
    "Code CreatedDateTimeOffset CreatedFromImportJournalId Id IsActive "
    "LastChangedDateTimeOffset ManagerEmployeeId ManagerEmployeeNo Name"
)
"""``DepartmentDto``: what a read returns."""

DEPARTMENT_POST: Final = _fields("Code IsActive ManagerEmployeeId ManagerEmployeeNo Name")
"""``DepartmentPostDto``: what a create accepts."""

DEPARTMENT_PATCH: Final = _fields("Code IsActive ManagerEmployeeId Name")
"""``DepartmentPatchDto``: what a JSON Patch may target."""

CUSTOMER_READ: Final = _fields(
    "Allowance BillableRate ContactCreatedDateTimeOffset ContactGroupIds "
    "CreatedFromImportJournalId CurrencyCode CustomerCreatedDateTimeOffset CustomerSince "
    "DateOfBirth DeliveryTerm DeliveryTermId DepartmentCode DepartmentId "
    "DoNotAddLatePaymentFees DoNotAddLatePaymentInterest "
    "DoNotAutomatePaymentNotifications EmailAddress ExternalImportReference "
    "ExternalNumber FirstName Id InvoiceBrandingThemeCode InvoiceBrandingThemeId "
    "InvoiceDeliveryType InvoiceEmailAddress InvoiceEmailAddressCC IsActive IsArchived "
    "IsPerson IsVatFree LastChangedDateTimeOffset LastName LegalName MailAddress Name "
    "NationalIdNumber NoticeOfDebtCollectionDeliveryType Number OrganizationNumber "
    "PaymentReminderEmailAddress PaymentTerm PaymentTermId PhoneNumber "
    "ReminderDeliveryType SalesPersonEmployeeId SalesPersonEmployeeNumber "
    "SendPaymentReminders SubledgerAccountId TransferToDebtCollectionAgency UseInvoiceFee "
    "WebsiteUrl"
)
"""``CustomerDto``: what a read returns."""

CUSTOMER_POST: Final = _fields(
    "Allowance BillableRate ContactGroupIds CurrencyCode CustomerSince DateOfBirth "
    "DeliveryTerm DeliveryTermId DepartmentCode DepartmentId DoNotAddLatePaymentFees "
    "DoNotAddLatePaymentInterest DoNotAutomatePaymentNotifications EmailAddress "
    "ExternalImportReference ExternalNumber FirstName InvoiceBrandingThemeCode "
    "InvoiceBrandingThemeId InvoiceDeliveryType InvoiceEmailAddress InvoiceEmailAddressCC "
    "IsArchived IsPerson IsVatFree LastName LegalName MailAddress Name NationalIdNumber "
    "NoticeOfDebtCollectionDeliveryType Number OrganizationNumber "
    "PaymentReminderEmailAddress PaymentTerm PaymentTermId PhoneNumber "
    "ReminderDeliveryType SalesPersonEmployeeId SalesPersonEmployeeNumber "
    "SendPaymentReminders SubLedgerNumberSeriesId TransferToDebtCollectionAgency "
    "UseInvoiceFee WebsiteUrl"
)
"""``CustomerPostDto``: what a create accepts."""

CUSTOMER_PATCH: Final = _fields(
    "Allowance BillableRate ContactGroupIds CurrencyCode CustomerSince DateOfBirth "
    "DeliveryTermId DepartmentId DoNotAddLatePaymentFees DoNotAddLatePaymentInterest "
    "DoNotAutomatePaymentNotifications EmailAddress ExternalImportReference "
    "ExternalNumber FirstName InvoiceBrandingThemeId InvoiceDeliveryType "
    "InvoiceEmailAddress InvoiceEmailAddressCC IsArchived IsPerson IsVatFree LastName "
    "LegalName MailAddress Name NationalIdNumber NoticeOfDebtCollectionDeliveryType "
    "Number OrganizationNumber PaymentReminderEmailAddress PaymentTermId PhoneNumber "
    "ReminderDeliveryType SalesPersonEmployeeId SendPaymentReminders "
    "TransferToDebtCollectionAgency UseInvoiceFee WebsiteUrl"
)
"""``CustomerPatchDto``: what a JSON Patch may target."""

PROJECT_READ: Final = _fields(
    "AllowAllActivities AllowAllEmployees AttachExpenseVouchersWhenBilling BillableRate "
    "BillableRateSpecification BrandingThemeCode BrandingThemeId BudgetedBillableRate "
    "BudgetedCostOfGoods BudgetedHours BudgetedOtherOperatingExpenses "
    "BudgetedPayrollExpenses BudgetedRevenueHours BudgetedTotalRevenue Code "
    "ContactPersonId ContractNo CreatedDateTimeOffset CreatedFromImportJournalId "
    "CustomerId CustomerNo DeliveryTerm DeliveryTermId DenyTimeTracking DepartmentCode "
    "DepartmentId EndDate ExpenseMarkupDescription ExpenseMarkupEnabled "
    "ExpenseMarkupFactor ExternalNumber FixedPrice HourlyRateMarkupDescription "
    "HourlyRateMarkupEnabled HourlyRateMarkupFactor Id IsActive IsBillable IsInternal "
    "LastChangedDateTimeOffset LocationCode LocationId Name ParentProjectCode "
    "ParentProjectId PaymentTermId PaymentTerms Progress ProjectBillingMethod "
    "ProjectManagerEmployeeId ProjectManagerEmployeeNo ProjectStatus PurchaseOrderNo "
    "StartDate"
)
"""``ProjectDto``: what a read returns."""

PROJECT_POST: Final = _fields(
    "AllowAllActivities AllowAllEmployees AttachExpenseVouchersWhenBilling BillableRate "
    "BillableRateSpecification BrandingThemeCode BrandingThemeId BudgetedBillableRate "
    "BudgetedCostOfGoods BudgetedHours BudgetedOtherOperatingExpenses "
    "BudgetedPayrollExpenses BudgetedRevenueHours BudgetedTotalRevenue Code "
    "ContactPersonId ContractNo CustomerId CustomerNo DeliveryTerm DeliveryTermId "
    "DenyTimeTracking DepartmentCode DepartmentId EndDate ExpenseMarkupDescription "
    "ExpenseMarkupEnabled ExpenseMarkupFactor ExternalNumber FixedPrice "
    "HourlyRateMarkupDescription HourlyRateMarkupEnabled HourlyRateMarkupFactor IsActive "
    "IsBillable IsInternal LocationCode LocationId Name ParentProjectCode ParentProjectId "
    "PaymentTermId PaymentTerms Progress ProjectBillingMethod ProjectManagerEmployeeId "
    "ProjectManagerEmployeeNo ProjectStatus PurchaseOrderNo StartDate"
)
"""``ProjectPostDto``: what a create accepts."""

PROJECT_PATCH: Final = _fields(
    "AllowAllActivities AllowAllEmployees AttachExpenseVouchersWhenBilling BillableRate "
    "BillableRateSpecification BrandingThemeId BudgetedBillableRate BudgetedCostOfGoods "
    "BudgetedHours BudgetedOtherOperatingExpenses BudgetedPayrollExpenses "
    "BudgetedRevenueHours BudgetedTotalRevenue Code ContactPersonId ContractNo CustomerId "
    "DeliveryTermId DenyTimeTracking DepartmentId EndDate ExpenseMarkupDescription "
    "ExpenseMarkupEnabled ExpenseMarkupFactor ExternalNumber FixedPrice "
    "HourlyRateMarkupDescription HourlyRateMarkupEnabled HourlyRateMarkupFactor IsActive "
    "IsBillable IsInternal LocationId Name ParentProjectId PaymentTermId Progress "
    "ProjectBillingMethod ProjectManagerEmployeeId ProjectStatus PurchaseOrderNo "
    "StartDate"
)
"""``ProjectPatchDto``: what a JSON Patch may target."""

ADDRESS_READ: Final = _fields(
    "AddressLine1 AddressLine2 City CountryCode ExternalCode Id LastChangedDateTimeOffset ZipCode"
)
"""``ContactAddressDto`` (a customer's ``MailAddress``)."""

ADDRESS_PATCH: Final = _fields("AddressLine1 AddressLine2 City CountryCode ExternalCode ZipCode")
"""``ContactAddressPatchDto``: patchable under ``/MailAddress/``."""

_ADDRESS_MAX: Final = {
    "AddressLine1": 200,
    "AddressLine2": 200,
    "City": 100,
    "ExternalCode": 50,
    "ZipCode": 50,
}

MAX_LENGTH: Final[dict[str, dict[str, int]]] = {
    "CustomerDto": {"ExternalImportReference": 50},
    "CustomerPostDto": {"ExternalImportReference": 50},
    "CustomerPatchDto": {"ExternalImportReference": 50},
    "ContactAddressDto": _ADDRESS_MAX,
    "ContactAddressPostDto": _ADDRESS_MAX,
    "ContactAddressPatchDto": _ADDRESS_MAX,
}
"""``maxLength`` of every string property that declares one, by DTO (a DTO not named has none).

The spec gives no length for ``Name``, ``Code`` or the other fields of these
resources, so only these are checked before a write.
"""

_ADDRESS_DTO: Final = {"PostDto": "ContactAddressPostDto", "PatchDto": "ContactAddressPatchDto"}


def max_lengths(entity: str, kind: str) -> dict[str, int]:
    """Field path -> ``maxLength`` for a write of ``entity`` (``Customer``) with ``kind``
    ``PostDto`` or ``PatchDto``; address fields appear as ``MailAddress.City``."""
    limits = dict(MAX_LENGTH.get(f"{entity}{kind}", {}))
    if entity == "Customer":
        for field, limit in MAX_LENGTH[_ADDRESS_DTO[kind]].items():
            limits[f"MailAddress.{field}"] = limit
    return limits


DATE_FIELDS: Final = _fields("CustomerSince DateOfBirth EndDate StartDate")
"""Fields declared ``format: date``; the API sometimes adds a time part to them."""


@dataclass(frozen=True)
class ResourceSpec:
    """One PowerOffice resource: its path, entity name and field tables."""

    name: str
    """Resource and path segment: ``Customers``."""
    entity: str
    """Entity name, as in the PatchDto name and error titles: ``Customer``."""
    read: frozenset[str]
    post: frozenset[str]
    patch: frozenset[str]
    idempotency_field: str
    """Field that carries the idempotency key of a create (see :mod:`.client`)."""
    idempotency_filter: str
    """List filter that finds a record by that field."""

    @property
    def patch_dto(self) -> str:
        return f"{self.entity}PatchDto"


RESOURCES: Final[dict[str, ResourceSpec]] = {
    "Departments": ResourceSpec(
        "Departments", "Department", DEPARTMENT_READ, DEPARTMENT_POST, DEPARTMENT_PATCH,
        "Code", "codes",
    ),
    "Customers": ResourceSpec(
        "Customers", "Customer", CUSTOMER_READ, CUSTOMER_POST, CUSTOMER_PATCH,
        "ExternalImportReference", "externalImportReference",
    ),
    "Projects": ResourceSpec(
        "Projects", "Project", PROJECT_READ, PROJECT_POST, PROJECT_PATCH,
        "Code", "projectCodes",
    ),
}  # fmt: skip

_BY_LOWER: Final = {name.lower(): spec for name, spec in RESOURCES.items()}


def resource_spec(resource: str) -> ResourceSpec:
    """The spec of ``resource`` (any casing); ValueError for a resource PowerOffice lacks here."""
    spec = _BY_LOWER.get(resource.lower())
    if spec is None:
        raise ValueError(
            f"unknown PowerOffice resource {resource!r}; expected one of {', '.join(RESOURCES)}"
        )
    return spec
