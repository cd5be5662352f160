"""Rows of many windows leave the day buffer as tables in date order, each row with its own window's
account and fetch time, every row once."""

from __future__ import annotations

import datetime as dt
import json
import random

import pyarrow as pa

from pipelines.day_buffer import DayBuffer
from pipelines.lake import TRANSACTIONS
from pipelines.synctera.rows import decode_transaction_batch

START = dt.date(2026, 3, 1)


def _window(rng: random.Random, account: str, n: int, extra: bool) -> list[dict[str, object]]:
    days = sorted(START + dt.timedelta(days=rng.randrange(10)) for _ in range(n))
    rows: list[dict[str, object]] = [
        {"transaction_id": f"{account}-{i}", "date": d.isoformat(), "amount": i} for i, d in enumerate(days)
    ]
    if extra and rows:
        rows[0]["new"] = {"x": 1}
    return rows


def test_rows_come_back_once_in_date_order_with_their_window() -> None:
    rng = random.Random(3)
    tables: list[pa.Table] = []
    buffer = DayBuffer(tables.append, run_id="run", rows=50)
    sent = {}
    for w in range(30):
        account = f"acc{w}"
        fetched_at = dt.datetime(2026, 3, 11, 0, w, tzinfo=dt.UTC)
        body = json.dumps({"transactions": _window(rng, account, rng.randrange(0, 40), extra=w % 7 == 0)})
        rows = decode_transaction_batch(body.encode()).transactions
        buffer.add(account, fetched_at, rows)
        sent.update({r.transaction_id: (account, fetched_at, r.date, r.amount, w % 7 == 0) for r in rows})
    buffer.flush()
    assert len(tables) > 1  # several flushes
    back = {}
    for table in tables:
        assert table.schema.equals(TRANSACTIONS)
        dates = table.column("date").to_pylist()
        assert dates == sorted(dates)
        for row in table.to_pylist():
            assert row["run_id"] == "run"
            back[row["transaction_id"]] = (
                row["account_id"],
                row["fetched_at"],
                row["date"],
                row["amount"],
                row["extra"] is not None,
            )
    assert sum(t.num_rows for t in tables) == len(sent)
    for key, (account, fetched_at, day, amount, extended) in sent.items():
        assert back[key][:4] == (account, fetched_at, day, amount)
        assert back[key][4] == (extended and key.endswith("-0"))  # only the row that had a new field


def test_nothing_kept_sends_nothing() -> None:
    tables: list[pa.Table] = []
    buffer = DayBuffer(tables.append, run_id="run")
    buffer.add("a", dt.datetime(2026, 3, 11, tzinfo=dt.UTC), [])
    buffer.flush()
    assert tables == []
