"""The bulk path for transactions: JSON bytes straight to typed rows, checked as the models check.

``msgspec`` decodes a transactions list into ``Transaction`` structs in one pass over the bytes, with
the checks of ``models.TransactionRows`` (strict types, int64 minor units, ``YYYY-MM-DD`` dates) and
no unknown field. It is a fast path only: any body it refuses (a broken type, a field the API added
since 0.153.0, malformed JSON) is validated again by pydantic, which either raises the error the
client has always raised, with its field path, or accepts the body and keeps the unknown fields.
So the set of accepted bodies, the rows and every error are pydantic's; msgspec only decides faster
when nothing is unusual.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated, Any

import msgspec
from pydantic import ConfigDict

from .models import INT64_MAX, INT64_MIN, TRANSACTION_FIELDS, ApiRecord, TransactionRow, TransactionRows


# gc=False: a struct of strings, numbers, dates and a tuple of strings cannot be part of a cycle, and
# untracked rows keep the garbage collector from walking hundreds of thousands of them per run. The
# categories are a tuple, not a list, for the same reason: the collector untracks a tuple of strings
# the first time it sees it, where a list per row stays tracked (kept rows decoded 2.6 × slower).
class Transaction(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """One transaction of API 0.153.0 as received; ``None`` when absent or null."""

    amount: Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)] | None = None
    authorized_date: dt.date | None = None
    category: tuple[str, ...] | None = None
    check_number: str | None = None
    currency: str | None = None
    date: dt.date | None = None
    is_pending: bool | None = None
    merchant_name: str | None = None
    payment_channel: str | None = None
    payment_method: str | None = None
    transaction_id: str | None = None
    transaction_type: str | None = None


class ExtendedTransaction(Transaction, frozen=True, gc=False):
    """A transaction with fields the API added since 0.153.0, kept as sorted JSON (never decoded
    from a body: only the pydantic path builds these)."""

    extra: str | None = None


class _TransactionList(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    transactions: list[Transaction]


_DECODER = msgspec.json.Decoder(_TransactionList)

# A row's id and date, read in C by ``map`` and ``sort``: no Python call per row.
ROW_ID = attrgetter("transaction_id")
ROW_DATE = attrgetter("date")


class TransactionBatch(ApiRecord):
    """One answer of ``get_external_account_transactions`` as ``Transaction`` rows.

    ``body`` is the answer's JSON: two rows with one id are compared on it (``same_contents``), since
    a field sent as null and a field left out are both ``None`` in a row but differ in the answer.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    transactions: list[Transaction]
    body: bytes

    def same_contents(self, first: int, second: int) -> bool:
        """Whether rows ``first`` and ``second`` were sent with exactly the same fields and values."""
        if self.transactions[first] != self.transactions[second]:
            return False
        sent = json.loads(self.body)["transactions"]  # rare: only for a repeated id
        return bool(sent[first] == sent[second])


def decode_transaction_batch(body: bytes) -> TransactionBatch:
    """Rows of a transactions answer; a body pydantic refuses raises its ``ValidationError``."""
    try:
        rows = _DECODER.decode(body).transactions
    except (msgspec.MsgspecError, ValueError):  # ValueError: bytes that are not UTF-8
        rows = [_from_row(row) for row in TransactionRows.model_validate_json(body).transactions]
    return TransactionBatch.model_construct(transactions=rows, body=body)


def _from_row(row: TransactionRow) -> ExtendedTransaction:
    """A row pydantic accepted, with its unknown fields (if any) as the ``extra`` JSON. Every row of
    such an answer is an ``ExtendedTransaction``, so that one row tells whether a window has any."""
    values: dict[str, Any] = dict(row)
    unknown = values.keys() - TRANSACTION_FIELDS
    extra = {key: values.pop(key) for key in unknown}
    if values.get("category") is not None:
        values["category"] = tuple(values["category"])  # as the fast path decodes it
    return ExtendedTransaction(
        **values, extra=json.dumps(extra, sort_keys=True, default=str) if extra else None
    )


def extras(rows: Sequence[Transaction]) -> list[str | None]:
    """Each row's unknown fields as JSON, or None."""
    return [row.extra if isinstance(row, ExtendedTransaction) else None for row in rows]
