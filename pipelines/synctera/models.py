"""Typed records for Synctera's External Accounts API (OpenAPI 0.153.0).

Responses are parsed strictly from JSON bytes: a field whose type changes (a string amount, a float
where int64 minor units are promised) fails loudly, while a field the API adds later is kept in
``model_extra`` and never breaks parsing. Optional fields that are missing become ``None``.

Enumerations in *responses* are plain ``str`` on purpose: a new status or account type from Synctera
must not stop ingestion. Request models use ``Literal`` so that a typo fails before any call.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator, with_config
from typing_extensions import TypedDict

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MinorUnits = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""An amount in the currency's minor unit (cents): 1025 means 10.25. Always int64."""


class ApiRecord(BaseModel):
    """A record received from the API: strict types, unknown fields kept, immutable."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class ApiRequest(BaseModel):
    """A record sent to the API: unknown fields are rejected so that a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- external_account and its parts -------------------------------------------------------------


class Address(ApiRecord):
    address_line_1: str
    country_code: str
    address_line_2: str | None = None
    address_type: str | None = None
    city: str | None = None
    id: str | None = None
    is_registered_agent: bool | None = None
    nickname: str | None = None
    postal_code: str | None = None
    state: str | None = None


class CorrespondentBankDetails(ApiRecord):
    bank_address: Address
    bank_name: str
    swift_code: str


class AccountIdentifiers(ApiRecord):
    number: str
    iban: str | None = None


class AccountRouting(ApiRecord):
    bank_countries: list[str]
    bank_name: str
    ach_routing_number: str | None = None
    bank_address: Address | None = None
    correspondent_bank_details: list[CorrespondentBankDetails] | None = None
    eft_ca_routing_number: str | None = None
    eft_routing_number: str | None = None
    swift_code: str | None = None
    wire_routing_number: str | None = None


class AccountVerification(ApiRecord):
    """Verification of an account by a vendor (PLAID, FINICITY or MANUAL)."""

    status: str
    vendor: str
    creation_time: AwareDatetime | None = None
    last_updated_time: AwareDatetime | None = None


class VendorData(ApiRecord):
    account_number_mask: str | None = None
    institution_id: str | None = None


class VendorInfo(ApiRecord):
    """Raw vendor payload: ``json`` for content_type application/json, ``xml`` for text/xml."""

    content_type: str
    vendor: str
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    xml: str | None = None


class ExternalAccount(ApiRecord):
    id: str
    account_identifiers: AccountIdentifiers
    account_owner_names: list[str]
    creation_time: AwareDatetime
    last_updated_time: AwareDatetime
    routing_identifiers: AccountRouting
    status: str
    type: str
    # Required but nullable: null means the account has not been verified.
    verification: AccountVerification | None
    business_id: str | None = None
    currency: str | None = None
    customer_id: str | None = None
    deletion_time: AwareDatetime | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    nickname: str | None = None
    tenant: str | None = None
    vendor_data: VendorData | None = None
    vendor_info: VendorInfo | None = None


class ExternalAccountsList(ApiRecord):
    """One page of ``list_external_accounts``. ``next_page_token`` is absent on the last page."""

    external_accounts: list[ExternalAccount]
    next_page_token: str | None = None


# --- balances and transactions -------------------------------------------------------------------


class ExternalAccountBalance(ApiRecord):
    currency: str
    available: MinorUnits | None = None
    current: MinorUnits | None = None
    limit: MinorUnits | None = None
    creation_time: AwareDatetime | None = None
    last_updated_time: AwareDatetime | None = None
    last_updated_time_vendor: AwareDatetime | None = None
    transactions_last_updated_time: AwareDatetime | None = None


class ExternalAccountTransaction(ApiRecord):
    """One transaction. The spec marks no field required; ``transaction_id`` is case-sensitive."""

    amount: MinorUnits | None = None
    authorized_date: dt.date | None = None
    category: list[str] | None = None
    check_number: str | None = None
    currency: str | None = None
    date: dt.date | None = None
    is_pending: bool | None = None
    merchant_name: str | None = None
    payment_channel: str | None = None
    payment_method: str | None = None
    transaction_id: str | None = None
    transaction_type: str | None = None


class ExternalAccountsTransactionList(ApiRecord):
    """At most 500 transactions: a full list of 500 may be truncated (the API has no paging here)."""

    transactions: list[ExternalAccountTransaction]


@with_config(ConfigDict(extra="allow", strict=True))
class TransactionRow(TypedDict, total=False):
    """One transaction as a plain dict, checked exactly as ``ExternalAccountTransaction`` is.

    The bulk path: validating into dicts skips building an object per row (about 2.5x faster), and
    the rows go straight on to Arrow. A key that is absent was not sent; unknown keys are kept.
    """

    amount: MinorUnits | None
    authorized_date: dt.date | None
    category: list[str] | None
    check_number: str | None
    currency: str | None
    date: dt.date | None
    is_pending: bool | None
    merchant_name: str | None
    payment_channel: str | None
    payment_method: str | None
    transaction_id: str | None
    transaction_type: str | None


TRANSACTION_FIELDS = frozenset(TransactionRow.__annotations__)
"""The transaction fields of API 0.153.0; any other key in a row is one the API added since."""


class TransactionRows(ApiRecord):
    """``external_accounts_transaction_list`` with its rows as ``TransactionRow`` dicts."""

    transactions: list[TransactionRow]


class TransactionRefreshResponse(ApiRecord):
    transactions_synced: int


class DeleteResponse(ApiRecord):
    id: str | None = None
    resource: str | None = None


# --- vendor linking -----------------------------------------------------------------------------


class AddVendorAccountFailure(ApiRecord):
    reason: str
    reason_description: str
    vendor_account_id: str
    vendor_error_message: str | None = None
    vendor_request_id: str | None = None


class AddVendorAccountsResponse(ApiRecord):
    """A 200 may still carry failures: callers must check ``failed_accounts``."""

    added_accounts: list[ExternalAccount]
    failed_accounts: list[AddVendorAccountFailure]
    deleted_accounts: list[ExternalAccount] | None = None


class ExternalAccountAccessToken(ApiRecord):
    vendor_institution_id: str
    vendor_public_token: str
    business_id: str | None = None
    customer_id: str | None = None
    request_id: str | None = None
    vendor_access_token: str | None = None
    vendor_customer_id: str | None = None


class ExternalAccountLinkToken(ApiRecord):
    client_name: str
    country_codes: list[str]
    language: str
    type: str
    business_id: str | None = None
    customer_id: str | None = None
    expiration: AwareDatetime | None = None
    link_customization_name: str | None = None
    link_token: str | None = None
    redirect_uri: str | None = None
    request_id: str | None = None
    sdk_type: str | None = None
    vendor_access_token: str | None = None
    vendor_institution_id: str | None = None
    verify_owner: bool | None = None


class Problem(BaseModel):
    """An ``application/problem+json`` error body (RFC 7807). Every field is optional in the spec.

    Parsed leniently, because it only serves diagnostics: extra fields such as ``retry_after``,
    ``missing`` or ``invalid`` are kept.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str | None = None
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    code: str | None = None


# --- requests -----------------------------------------------------------------------------------

CustomerType = Literal["BUSINESS", "PERSONAL"]
VerificationVendor = Literal["FINICITY", "MANUAL", "PLAID"]
LinkVendor = Literal["FINICITY", "PLAID"]
WritableAccountType = Literal["CHECKING", "SAVINGS"]
NonEmpty = Annotated[str, Field(min_length=1)]
SwiftCode = Annotated[str, Field(pattern=r"^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class ForOneCustomer(ApiRequest):
    """A request that names exactly one of ``customer_id`` (personal) or ``business_id``."""

    business_id: str | None = None
    customer_id: str | None = None

    def _personal_customer(self) -> str | None:
        return self.customer_id

    @model_validator(mode="after")
    def _exactly_one_customer(self) -> ForOneCustomer:
        if (self._personal_customer() is None) == (self.business_id is None):
            raise ValueError("exactly one of customer_id or business_id must be given")
        return self


class AddressInput(ApiRequest):
    address_line_1: str
    country_code: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    address_line_2: str | None = None
    city: str | None = None
    is_registered_agent: bool | None = None
    nickname: str | None = None
    postal_code: str | None = None
    state: str | None = None


class CorrespondentBankInput(ApiRequest):
    bank_address: AddressInput
    bank_name: NonEmpty
    swift_code: SwiftCode


class VerificationInput(ApiRequest):
    status: Literal["UNVERIFIED", "VERIFIED"]
    vendor: VerificationVendor
    creation_time: AwareDatetime | None = None
    last_updated_time: AwareDatetime | None = None


class AccountIdentifiersInput(ApiRequest):
    """At least one of ``number`` or ``iban``; domestic accounts need only the number."""

    number: NonEmpty | None = None
    iban: NonEmpty | None = None


class InternationalWireDetails(ApiRequest):
    bank_address: AddressInput
    swift_code: SwiftCode
    correspondent_banks_details: list[CorrespondentBankInput] | None = None


class RoutingIdentifiersInput(ApiRequest):
    bank_countries: Annotated[list[str], Field(min_length=1)]
    bank_name: NonEmpty
    ach_routing_number: NonEmpty | None = None
    eft_ca_routing_number: Annotated[str, Field(min_length=9, max_length=9)] | None = None
    international_wire_details: InternationalWireDetails | None = None
    wire_routing_number: NonEmpty | None = None


class AddAccountsRequest(ForOneCustomer):
    """Body of ``add_external_accounts``: exactly one of ``customer_id`` or ``business_id``."""

    account_identifiers: AccountIdentifiersInput
    account_owner_names: Annotated[list[NonEmpty], Field(min_length=1)]
    customer_type: CustomerType
    routing_identifiers: RoutingIdentifiersInput
    type: WritableAccountType
    currency: CurrencyCode | None = None
    metadata: dict[str, Any] | None = None
    nickname: NonEmpty | None = None
    tenant: str | None = None
    vendor_account_id: NonEmpty | None = None
    verification: VerificationInput | None = None


class AddVendorAccountsRequest(ForOneCustomer):
    """Body of ``add_vendor_external_accounts`` and ``sync_vendor_external_accounts``."""

    customer_type: CustomerType
    vendor: LinkVendor
    vendor_access_token: NonEmpty | None = None
    vendor_account_ids: Annotated[list[NonEmpty], Field(min_length=1)] | None = None
    vendor_customer_id: str | None = None
    verify_owner: bool | None = None


class AccessTokenRequest(ForOneCustomer):
    vendor_institution_id: NonEmpty
    vendor_public_token: str
    vendor_customer_id: str | None = None  # the spec's deprecated alias for customer_id

    def _personal_customer(self) -> str | None:
        return self.customer_id or self.vendor_customer_id


class LinkTokenRequest(ForOneCustomer):
    client_name: str
    country_codes: Annotated[list[Literal["CA", "US"]], Field(min_length=1)]
    language: Literal["DE", "EN", "ES", "FR", "NL"]
    type: Literal["CREDIT", "DEPOSITORY", "INVESTMENT", "MICRO_DEPOSIT"]
    link_customization_name: str | None = None
    redirect_uri: str | None = None
    sdk_type: Literal["ANDROID", "IOS", "WEB"] | None = None
    vendor_access_token: str | None = None
    vendor_institution_id: NonEmpty | None = None
    verify_owner: bool | None = None


class PatchAccountIdentifiers(ApiRequest):
    number: NonEmpty | None = None
    iban: NonEmpty | None = None


class PatchInternationalWireDetails(ApiRequest):
    bank_address: AddressInput | None = None
    correspondent_banks_details: list[CorrespondentBankInput] | None = None
    swift_code: SwiftCode | None = None


class PatchRoutingIdentifiers(ApiRequest):
    ach_routing_number: NonEmpty | None = None
    bank_name: NonEmpty | None = None
    eft_ca_routing_number: Annotated[str, Field(min_length=9, max_length=9)] | None = None
    international_wire_details: PatchInternationalWireDetails | None = None
    wire_routing_number: str | None = None


class PatchExternalAccount(ApiRequest):
    """Body of ``update_external_account``; only fields that were set are sent."""

    account_identifiers: PatchAccountIdentifiers | None = None
    account_owner_names: list[str] | None = None
    currency: CurrencyCode | None = None
    nickname: NonEmpty | None = None
    routing_identifiers: PatchRoutingIdentifiers | None = None
    type: WritableAccountType | None = None
    verification: VerificationInput | None = None
