"""API records → Arrow tables with the lake's schemas (amounts stay int64 minor units)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import lake
from pipelines.synctera.errors import ApiError
from pipelines.synctera.models import ApiRecord, ExternalAccount, ExternalAccountBalance
from pipelines.synctera.rows import ExtendedTransaction, Transaction, extras


def _extra(record: ApiRecord) -> str | None:
    """Fields the API sent that the 0.153.0 schema does not know: kept, as JSON, never dropped."""
    return _json(record.model_extra or None)


def _json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, ApiRecord):
        value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(value, sort_keys=True, default=str)


_FIELD_OF = {name: attrgetter(name) for name in Transaction.__struct_fields__}


@dataclass(frozen=True)
class WindowRows:
    """Checked rows of one account's window, and when they were fetched."""

    account_id: str
    fetched_at: dt.datetime
    rows: Sequence[Transaction]


def transactions_table(
    account_id: str,
    transactions: Sequence[Transaction],
    *,
    fetched_at: dt.datetime,
    run_id: str,
) -> pa.Table:
    """One window's checked rows to Arrow."""
    return window_rows_table([WindowRows(account_id, fetched_at, transactions)], run_id=run_id)


def window_rows_table(parts: Sequence[WindowRows], *, run_id: str) -> pa.Table:
    """Checked rows of many windows to one Arrow table, in the order given, a column at a time.

    One table for thousands of rows: each column costs Arrow a fixed few microseconds however short
    it is, which a table per window (a few hundred rows) paid 16 times over.
    """
    rows = [row for part in parts for row in part.rows]
    # Each row's window, to repeat the window's account and fetch time in Arrow (no list per row).
    which = pa.array(np.repeat(np.arange(len(parts), dtype=np.int32), [len(p.rows) for p in parts]))
    arrays = []
    for field in lake.TRANSACTIONS:
        name = field.name
        if name in _FIELD_OF:
            arrays.append(pa.array(list(map(_FIELD_OF[name], rows)), field.type))
        elif name == "extra":
            # An answer with unknown fields has every row extended, so its first row tells.
            extended = any(p.rows and isinstance(p.rows[0], ExtendedTransaction) for p in parts)
            arrays.append(pa.array(extras(rows), field.type) if extended else pa.nulls(len(rows), field.type))
        elif name == "account_id":
            arrays.append(pa.array([p.account_id for p in parts], field.type).take(which))
        elif name == "fetched_at":
            arrays.append(pa.array([p.fetched_at for p in parts], field.type).take(which))
        else:
            arrays.append(pc.fill_null(pa.nulls(len(rows), field.type), pa.scalar(run_id, field.type)))
    return pa.Table.from_arrays(arrays, schema=lake.TRANSACTIONS)


def accounts_table(accounts: Sequence[ExternalAccount], *, observed_at: dt.datetime, run_id: str) -> pa.Table:
    rows = []
    for a in accounts:
        routing = a.routing_identifiers
        rows.append(
            {
                "account_id": a.id,
                "id": a.id,
                "customer_id": a.customer_id,
                "business_id": a.business_id,
                "status": a.status,
                "type": a.type,
                "currency": a.currency,
                "name": a.name,
                "nickname": a.nickname,
                "account_owner_names": a.account_owner_names,
                "account_identifiers": {
                    "number": a.account_identifiers.number,
                    "iban": a.account_identifiers.iban,
                },
                "routing_identifiers": {
                    "bank_name": routing.bank_name,
                    "bank_countries": routing.bank_countries,
                    "ach_routing_number": routing.ach_routing_number,
                    "wire_routing_number": routing.wire_routing_number,
                    "swift_code": routing.swift_code,
                    "eft_routing_number": routing.eft_routing_number,
                    "eft_ca_routing_number": routing.eft_ca_routing_number,
                },
                "verification": None
                if a.verification is None
                else {
                    "status": a.verification.status,
                    "vendor": a.verification.vendor,
                    "creation_time": a.verification.creation_time,
                    "last_updated_time": a.verification.last_updated_time,
                },
                "vendor_data": None
                if a.vendor_data is None
                else {
                    "account_number_mask": a.vendor_data.account_number_mask,
                    "institution_id": a.vendor_data.institution_id,
                },
                "vendor_info": _json(a.vendor_info),
                "metadata": _json(a.metadata),
                "tenant": a.tenant,
                "creation_time": a.creation_time,
                "last_updated_time": a.last_updated_time,
                "deletion_time": a.deletion_time,
                "extra": _extra(a),
                "date": observed_at.date(),
                "observed_at": observed_at,
                "run_id": run_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=lake.EXTERNAL_ACCOUNTS)


@dataclass(frozen=True)
class BalanceObservation:
    """One account's balance as observed at ``observed_at``, or why it could not be."""

    account_id: str
    observed_at: dt.datetime
    max_age: int | None
    balance: ExternalAccountBalance | None = None
    error: str | None = None
    error_status: int | None = None
    error_code: str | None = None

    @classmethod
    def failed(
        cls, account_id: str, observed_at: dt.datetime, max_age: int | None, exc: Exception
    ) -> BalanceObservation:
        status = exc.status if isinstance(exc, ApiError) else None
        code = exc.code if isinstance(exc, ApiError) else None
        return cls(account_id, observed_at, max_age, None, str(exc), status, code)


def balances_table(observations: Iterable[BalanceObservation], *, run_id: str) -> pa.Table:
    rows = []
    for o in observations:
        b = o.balance
        rows.append(
            {
                "account_id": o.account_id,
                "date": o.observed_at.date(),
                "observed_at": o.observed_at,
                "currency": b.currency if b else None,
                "available": b.available if b else None,
                "current": b.current if b else None,
                "limit": b.limit if b else None,
                "creation_time": b.creation_time if b else None,
                "last_updated_time": b.last_updated_time if b else None,
                "last_updated_time_vendor": b.last_updated_time_vendor if b else None,
                "transactions_last_updated_time": b.transactions_last_updated_time if b else None,
                "max_age": o.max_age,
                "error": o.error,
                "error_status": o.error_status,
                "error_code": o.error_code,
                "extra": _extra(b) if b else None,
                "run_id": run_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=lake.BALANCES)
