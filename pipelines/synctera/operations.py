"""The External Accounts operations, each built once as a transport-free ``Operation``.

Both clients (sync and async) call these builders, so request building, parameter encoding and the
response model live in exactly one place. Every builder validates its arguments before any call.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from . import models, rows

T = TypeVar("T", bound=models.ApiRecord)
R = TypeVar("R", bound=models.ApiRequest)

TRANSACTIONS_CAP = 500
"""The transactions endpoint returns at most this many rows and offers no way to page past them."""

MAX_PAGE_SIZE = 100
"""``limit`` above this is clamped by the API."""


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One API call, fully described: what to send and which model the 2xx body must match."""

    operation_id: str
    method: str
    path: str
    response: type[T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    idempotency_key: str | None = None
    decode: Callable[[bytes], T] | None = None
    """Parses the 2xx body instead of ``response.model_validate_json``: the same checks, faster."""


def _account_path(external_account_id: str, suffix: str = "") -> str:
    if not isinstance(external_account_id, str) or not external_account_id:
        raise ValueError(f"external_account_id must be a non-empty string, got {external_account_id!r}")
    # Ids are opaque: encode everything so that no id can change the path's shape.
    return f"/external_accounts/{quote(external_account_id, safe='')}{suffix}"


def _csv(values: Sequence[str] | None) -> str | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not values or any(not v for v in values):
        raise ValueError(f"id filters must be non-empty strings, got {values!r}")
    return ",".join(values)


def _bool(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")


def _query(**params: str | None) -> dict[str, str]:
    return {k: v for k, v in params.items() if v is not None}


def _body(request: BaseModel) -> bytes:
    return json.dumps(request.model_dump(mode="json", exclude_unset=True, by_alias=True)).encode()


def _coerce(request: R | Mapping[str, Any], model: type[R]) -> R:
    return request if isinstance(request, model) else model.model_validate(request)


def _key(idempotency_key: str | None) -> str:
    """One key per logical call: generated here, then reused unchanged by every retry."""
    if idempotency_key is not None and not idempotency_key:
        raise ValueError("idempotency_key must not be empty")
    return idempotency_key or str(uuid.uuid4())


def _write(
    operation_id: str,
    method: str,
    path: str,
    response: type[T],
    request: R | Mapping[str, Any],
    request_model: type[R],
    idempotency_key: str | None,
) -> Operation[T]:
    """A POST or PATCH with a validated JSON body and its idempotency key."""
    body = _body(_coerce(request, request_model))
    return Operation(operation_id, method, path, response, body=body, idempotency_key=_key(idempotency_key))


def list_external_accounts(
    *,
    id: Sequence[str] | None = None,
    customer_id: Sequence[str] | None = None,
    business_id: Sequence[str] | None = None,
    include_history: bool | None = None,
    limit: int | None = None,
    page_token: str | None = None,
) -> Operation[models.ExternalAccountsList]:
    """One page of external accounts. ``include_history`` adds deleted (inactive) accounts."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    if page_token is not None and not page_token:
        raise ValueError("page_token must not be empty")
    params = _query(
        id=_csv(id),
        customer_id=_csv(customer_id),
        business_id=_csv(business_id),
        include_history=_bool(include_history),
        limit=None if limit is None else str(limit),
        page_token=page_token,
    )
    return Operation("listExternalAccounts", "GET", "/external_accounts", models.ExternalAccountsList, params)


def get_external_account(external_account_id: str) -> Operation[models.ExternalAccount]:
    return Operation("getExternalAccount", "GET", _account_path(external_account_id), models.ExternalAccount)


def get_external_account_balance(
    external_account_id: str, *, max_age: int | None = None
) -> Operation[models.ExternalAccountBalance]:
    """The live balance; fails when the vendor's balance is older than ``max_age`` seconds."""
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0):
        raise ValueError(f"max_age must be a non-negative number of seconds, got {max_age!r}")
    return Operation(
        "getExternalAccountBalance",
        "GET",
        _account_path(external_account_id, "/balance"),
        models.ExternalAccountBalance,
        _query(max_age=None if max_age is None else str(max_age)),
    )


def _transactions(
    external_account_id: str,
    start_date: dt.date,
    end_date: dt.date,
    response: type[T],
    decode: Callable[[bytes], T] | None = None,
) -> Operation[T]:
    for name, value in (("start_date", start_date), ("end_date", end_date)):
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise TypeError(f"{name} must be a datetime.date, got {value!r}")
    if not start_date < end_date:
        raise ValueError(f"start_date {start_date} must be before end_date {end_date} (end is exclusive)")
    return Operation(
        "getExternalAccountTransactions",
        "GET",
        _account_path(external_account_id, "/transactions"),
        response,
        {"start_date": start_date.isoformat(), "end_date": end_date.isoformat()},
        decode=decode,
    )


def get_external_account_transactions(
    external_account_id: str, *, start_date: dt.date, end_date: dt.date
) -> Operation[models.ExternalAccountsTransactionList]:
    """Transactions dated in ``[start_date, end_date)`` (UTC). At most 500 come back, with no paging."""
    return _transactions(external_account_id, start_date, end_date, models.ExternalAccountsTransactionList)


def get_external_account_transaction_rows(
    external_account_id: str, *, start_date: dt.date, end_date: dt.date
) -> Operation[models.TransactionRows]:
    """The same call, its rows as checked dicts (``TransactionRow``): the bulk ingestion path."""
    return _transactions(external_account_id, start_date, end_date, models.TransactionRows)


def get_external_account_transaction_batch(
    external_account_id: str, *, start_date: dt.date, end_date: dt.date
) -> Operation[rows.TransactionBatch]:
    """The same call, its rows as ``Transaction`` structs decoded straight from the bytes (the
    same checks and errors as the models): the ingestion path."""
    return _transactions(
        external_account_id, start_date, end_date, rows.TransactionBatch, rows.decode_transaction_batch
    )


def add_external_accounts(
    request: models.AddAccountsRequest | Mapping[str, Any], *, idempotency_key: str | None = None
) -> Operation[models.ExternalAccount]:
    """Add a manually entered account; it starts UNVERIFIED."""
    return _write(
        "addExternalAccounts",
        "POST",
        "/external_accounts",
        models.ExternalAccount,
        request,
        models.AddAccountsRequest,
        idempotency_key,
    )


def add_vendor_external_accounts(
    request: models.AddVendorAccountsRequest | Mapping[str, Any], *, idempotency_key: str | None = None
) -> Operation[models.AddVendorAccountsResponse]:
    """Link accounts through a vendor (Plaid, Finicity). A 200 may still list failed accounts."""
    return _write(
        "addVendorExternalAccounts",
        "POST",
        "/external_accounts/add_vendor_accounts",
        models.AddVendorAccountsResponse,
        request,
        models.AddVendorAccountsRequest,
        idempotency_key,
    )


def sync_vendor_external_accounts(
    request: models.AddVendorAccountsRequest | Mapping[str, Any], *, idempotency_key: str | None = None
) -> Operation[models.AddVendorAccountsResponse]:
    """Re-sync vendor-linked accounts: reports added, failed and (end-user removed) deleted accounts."""
    return _write(
        "syncVendorExternalAccounts",
        "POST",
        "/external_accounts/sync_vendor_accounts",
        models.AddVendorAccountsResponse,
        request,
        models.AddVendorAccountsRequest,
        idempotency_key,
    )


def create_access_token(
    request: models.AccessTokenRequest | Mapping[str, Any], *, idempotency_key: str | None = None
) -> Operation[models.ExternalAccountAccessToken]:
    """Exchange a vendor public token for a permanent access token."""
    return _write(
        "createAccessToken",
        "POST",
        "/external_accounts/access_tokens",
        models.ExternalAccountAccessToken,
        request,
        models.AccessTokenRequest,
        idempotency_key,
    )


def create_verification_link_token(
    request: models.LinkTokenRequest | Mapping[str, Any], *, idempotency_key: str | None = None
) -> Operation[models.ExternalAccountLinkToken]:
    """Create a link token that starts the vendor's account-verification flow."""
    return _write(
        "createVerificationLinkToken",
        "POST",
        "/external_accounts/link_tokens",
        models.ExternalAccountLinkToken,
        request,
        models.LinkTokenRequest,
        idempotency_key,
    )


def update_external_account(
    external_account_id: str,
    request: models.PatchExternalAccount | Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
) -> Operation[models.ExternalAccount]:
    """Edit an unverified account; only the fields set on ``request`` are sent."""
    return _write(
        "updateExternalAccount",
        "PATCH",
        _account_path(external_account_id),
        models.ExternalAccount,
        request,
        models.PatchExternalAccount,
        idempotency_key,
    )


def delete_external_account(external_account_id: str) -> Operation[models.DeleteResponse]:
    """Delete (soft-delete: status DELETED, listed only with include_history) an account."""
    return Operation(
        "deleteExternalAccount", "DELETE", _account_path(external_account_id), models.DeleteResponse
    )


def refresh_transactions(
    external_account_id: str,
    *,
    restricted: bool | None = None,
    force_vendor_refresh: bool | None = None,
) -> Operation[models.TransactionRefreshResponse]:
    """Ask Synctera to re-sync transactions from the vendor for this account's access token."""
    return Operation(
        "externalAccountRefreshTransactions",
        "POST",
        _account_path(external_account_id, "/refresh_transactions"),
        models.TransactionRefreshResponse,
        _query(restricted=_bool(restricted), force_vendor_refresh=_bool(force_vendor_refresh)),
    )
