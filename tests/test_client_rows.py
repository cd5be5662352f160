"""The fast decoder of transactions lists against the models it stands in for: the same rows, the
same refusals, for bodies the fast path takes and bodies it hands to pydantic."""

from __future__ import annotations

import datetime as dt
import json

import pydantic
import pytest

from pipelines.synctera.models import TRANSACTION_FIELDS, TransactionRows
from pipelines.synctera.rows import ExtendedTransaction, Transaction, decode_transaction_batch

ROW = {
    "transaction_id": "Ab-1",
    "amount": -(2**63),
    "authorized_date": "2026-01-31",
    "category": ["Travel", "Airlines"],
    "check_number": "1001",
    "currency": "USD",
    "date": "2026-02-01",
    "is_pending": False,
    "merchant_name": 'Café \u00e9 "quoted"',
    "payment_channel": "ONLINE",
    "payment_method": "CARD",
    "transaction_type": "DEBIT",
}

BODIES = [
    b'{"transactions": []}',
    json.dumps({"transactions": [ROW, {"transaction_id": "x"}, {}]}).encode(),
    json.dumps({"transactions": [{k: None for k in ROW}]}).encode(),
    b'{"transactions": [{"amount": 1, "amount": 2}]}',  # a repeated key: the last one counts in both
    b' \n{"transactions": [{"amount": 9223372036854775807, "date": "2026-12-31"}]} \n',
    # Bodies the fast path refuses, which pydantic accepts or refuses in its own words:
    json.dumps({"transactions": [{**ROW, "new": {"nested": [1, 2.5]}, "other": None}]}).encode(),
    b'{"transactions": [], "next": 1}',
    b'{"transactions": [{"amount": 9223372036854775808}]}',
    b'{"transactions": [{"amount": -9223372036854775809}]}',
    b'{"transactions": [{"amount": 1.0}]}',
    b'{"transactions": [{"amount": 1e3}]}',
    b'{"transactions": [{"amount": true}]}',
    b'{"transactions": [{"date": "2026-02-30"}]}',
    b'{"transactions": [{"date": "2026-02-01T00:00:00Z"}]}',
    b'{"transactions": [{"date": 20260201}]}',
    b'{"transactions": [{"is_pending": 0}]}',
    b'{"transactions": [{"category": ["a", 1]}]}',
    b'{"transactions": [{"transaction_id": "\\ud800"}]}',
    b'{"transactions": [{"transaction_id": "a\xff"}]}',
    b'{"transactions": {}}',
    b'{"transactions": [1]}',
    b'{"transactions": [{"amount": 1}]',
    b'{"transactions": []} trailing',
    b"[]",
    b"",
]


def _expected(body: bytes) -> list[dict[str, object]] | str:
    try:
        return [dict(row) for row in TransactionRows.model_validate_json(body).transactions]
    except pydantic.ValidationError as exc:
        return str(exc)


def _as_dict(row: Transaction, sent: dict[str, object]) -> dict[str, object]:
    """The row as the models' dict: fields that were sent (null or not), and the unknown ones."""
    values: dict[str, object] = {k: getattr(row, k) for k in TRANSACTION_FIELDS if k in sent}
    if isinstance(values.get("category"), tuple):  # the rows' categories are tuples, the models' lists
        values["category"] = list(values["category"])  # type: ignore[arg-type]
    if isinstance(row, ExtendedTransaction) and row.extra is not None:
        values.update(json.loads(row.extra))
    return values


def test_the_two_paths_check_the_same_fields() -> None:
    assert set(Transaction.__struct_fields__) == TRANSACTION_FIELDS


@pytest.mark.parametrize("body", BODIES)
def test_the_fast_decoder_accepts_refuses_and_reads_as_the_models_do(body: bytes) -> None:
    expected = _expected(body)
    if isinstance(expected, str):
        with pytest.raises(pydantic.ValidationError) as refused:
            decode_transaction_batch(body)
        assert str(refused.value) == expected
        return
    batch = decode_transaction_batch(body)
    sent = json.loads(body)["transactions"]
    assert [_as_dict(row, raw) for row, raw in zip(batch.transactions, sent, strict=True)] == expected


def test_rows_sent_with_a_null_and_without_the_field_are_not_the_same_contents() -> None:
    batch = decode_transaction_batch(
        b'{"transactions": [{"transaction_id": "a", "amount": null}, {"transaction_id": "a"},'
        b' {"transaction_id": "a"}]}'
    )
    assert batch.transactions[0] == batch.transactions[1]  # both None as rows ...
    assert not batch.same_contents(0, 1)  # ... but not what was sent
    assert batch.same_contents(1, 2)


def test_unknown_fields_are_kept_as_sorted_json() -> None:
    body = {"transactions": [{"transaction_id": "t", "date": "2026-02-01", "z": 1, "a": {"b": [True]}}]}
    (row,) = decode_transaction_batch(json.dumps(body).encode()).transactions
    assert isinstance(row, ExtendedTransaction)
    assert row.extra == '{"a": {"b": [true]}, "z": 1}'
    assert row.date == dt.date(2026, 2, 1)


def test_both_paths_give_categories_as_the_same_tuple() -> None:
    fast = decode_transaction_batch(json.dumps({"transactions": [ROW]}).encode()).transactions[0]
    slow = decode_transaction_batch(json.dumps({"transactions": [{**ROW, "new": 1}]}).encode())
    (extended,) = slow.transactions
    assert isinstance(extended, ExtendedTransaction)
    assert fast.category == extended.category == ("Travel", "Airlines")
