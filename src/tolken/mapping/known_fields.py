"""The fields a mapping may name: PowerOffice's (from the spec) and the PMS contract's.

Plain data, so the mapping can check a file at load without importing the
connectors or the sandbox (the import direction of DESIGN §8). Unit tests keep
these tables equal to their sources: the PowerOffice client's DTO tables
(``connectors/poweroffice/_schema.py``, itself kept equal to the public spec)
and the reference PMS's record shapes (``sandbox/pms/schema.py``, DESIGN §2).
PowerOffice fields are every field a read returns or a create or JSON Patch
accepts; nested ones are dotted (``MailAddress.City``). PMS fields are the
contract's, read-only ones included (``address.city`` for the address lines).
"""

from __future__ import annotations

from typing import Final

__all__ = ["PMS_CONTRACT_FIELDS", "POWEROFFICE_FIELDS"]


def _fields(names: str) -> frozenset[str]:
    return frozenset(names.split())


POWEROFFICE_FIELDS: Final[dict[str, frozenset[str]]] = {
    "Departments": _fields(
        "Code CreatedDateTimeOffset CreatedFromImportJournalId Id IsActive "
        "LastChangedDateTimeOffset ManagerEmployeeId ManagerEmployeeNo Name"
    ),
    "Customers": _fields(
        "Allowance BillableRate ContactCreatedDateTimeOffset ContactGroupIds "
        "CreatedFromImportJournalId CurrencyCode CustomerCreatedDateTimeOffset CustomerSince "
        "DateOfBirth DeliveryTerm DeliveryTermId DepartmentCode DepartmentId "
        "DoNotAddLatePaymentFees DoNotAddLatePaymentInterest DoNotAutomatePaymentNotifications "
        "EmailAddress ExternalImportReference ExternalNumber FirstName Id "
        "InvoiceBrandingThemeCode InvoiceBrandingThemeId InvoiceDeliveryType InvoiceEmailAddress "
        "InvoiceEmailAddressCC IsActive IsArchived IsPerson IsVatFree LastChangedDateTimeOffset "
        "LastName LegalName MailAddress MailAddress.AddressLine1 MailAddress.AddressLine2 "
        "MailAddress.City MailAddress.CountryCode MailAddress.ExternalCode MailAddress.Id "
        "MailAddress.LastChangedDateTimeOffset MailAddress.ZipCode Name NationalIdNumber "
        "NoticeOfDebtCollectionDeliveryType Number OrganizationNumber PaymentReminderEmailAddress "
        "PaymentTerm PaymentTermId PhoneNumber ReminderDeliveryType SalesPersonEmployeeId "
        "SalesPersonEmployeeNumber SendPaymentReminders SubLedgerNumberSeriesId "
        "SubledgerAccountId TransferToDebtCollectionAgency UseInvoiceFee WebsiteUrl"
    ),
    "Projects": _fields(
        "AllowAllActivities AllowAllEmployees AttachExpenseVouchersWhenBilling BillableRate "
        "BillableRateSpecification BrandingThemeCode BrandingThemeId BudgetedBillableRate "
        "BudgetedCostOfGoods BudgetedHours BudgetedOtherOperatingExpenses BudgetedPayrollExpenses "
        "BudgetedRevenueHours BudgetedTotalRevenue Code ContactPersonId ContractNo "
        "CreatedDateTimeOffset CreatedFromImportJournalId CustomerId CustomerNo DeliveryTerm "
        "DeliveryTermId DenyTimeTracking DepartmentCode DepartmentId EndDate "
        "ExpenseMarkupDescription ExpenseMarkupEnabled ExpenseMarkupFactor ExternalNumber "
        "FixedPrice HourlyRateMarkupDescription HourlyRateMarkupEnabled HourlyRateMarkupFactor Id "
        "IsActive IsBillable IsInternal LastChangedDateTimeOffset LocationCode LocationId Name "
        "ParentProjectCode ParentProjectId PaymentTermId PaymentTerms Progress "
        "ProjectBillingMethod ProjectManagerEmployeeId ProjectManagerEmployeeNo ProjectStatus "
        "PurchaseOrderNo StartDate"
    ),
}
"""Per PowerOffice resource, the field paths its DTOs define."""

PMS_CONTRACT_FIELDS: Final[dict[str, frozenset[str]]] = {
    "customers": _fields(
        "active address address.city address.country address.line1 address.line2 "
        "address.postal_code created_at email external_ref first_name id kind last_name name "
        "number organization_number phone updated_at version website"
    ),
    "projects": _fields(
        "active billable code created_at customer_id department_id end_date external_ref id name "
        "progress start_date status updated_at version"
    ),
}
"""Per PMS contract resource, the field paths its records carry."""
