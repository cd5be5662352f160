"""The ledger of windows fetched (``transaction_windows``), and what earlier runs say about density."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from pipelines import lake as lake_module
from pipelines.lake import Lake
from pipelines.transactions import WindowRecord
from pipelines.windows import Outcome

DENSITY_LOOKBACK = dt.timedelta(days=120)


def windows_table(records: list[WindowRecord], *, run_id: str) -> pa.Table:
    rows = [
        {
            "account_id": r.account_id,
            "date": r.window.start,
            "start_date": r.window.start,
            "end_date": r.window.end,
            "row_count": r.row_count,
            "complete": r.outcome is Outcome.COMPLETE,
            "outcome": r.outcome.value,
            "attempts": r.attempts,
            "fetched_at": r.fetched_at,
            "run_id": run_id,
        }
        for r in records
    ]
    return pa.Table.from_pylist(rows, schema=lake_module.TRANSACTION_WINDOWS)


def prior_rates(lake: Lake, *, around: dt.date) -> dict[str, float]:
    """Rows per day of each account in complete windows fetched earlier, near ``around``."""
    if not lake.partitions("transaction_windows"):
        return {}
    connection = lake.duckdb()
    try:
        with lake.reading("transactions"):  # the ledger is published under the transactions lock
            rows = connection.execute(
                """
            SELECT account_id, sum(row_count) / sum(datediff('day', start_date, end_date))
            FROM read_parquet(?, hive_partitioning = true)
            WHERE complete AND start_date BETWEEN ? AND ?
            GROUP BY account_id
            """,
                [lake.glob("transaction_windows"), around - DENSITY_LOOKBACK, around + DENSITY_LOOKBACK],
            ).fetchall()
    finally:
        connection.close()
    return {account_id: float(rate) for account_id, rate in rows}


def prior_days(lake: Lake, *, start: dt.date, end: dt.date) -> dict[str, dict[dt.date, int]]:
    """Rows of each day in ``[start, end)`` that an earlier run fetched alone (the latest such window
    of an account-day): the spikes it set apart and the days it flagged. Hints for planning windows:
    a day re-fetched in the lookback is its own window again, not a capped window first."""
    if not lake.partitions("transaction_windows"):
        return {}
    connection = lake.duckdb()
    try:
        with lake.reading("transactions"):  # the ledger is published under the transactions lock
            rows = connection.execute(
                """
            SELECT account_id, start_date, row_count
            FROM read_parquet(?, hive_partitioning = true)
            WHERE outcome <> 'capped' AND datediff('day', start_date, end_date) = 1
              AND start_date >= ? AND start_date < ?
            QUALIFY row_number() OVER (PARTITION BY account_id, start_date ORDER BY fetched_at DESC) = 1
            """,
                [lake.glob("transaction_windows"), start, end],
            ).fetchall()
    finally:
        connection.close()
    days: dict[str, dict[dt.date, int]] = {}
    for account_id, day, count in rows:
        days.setdefault(account_id, {})[day] = int(count)
    return days


def fetched_since(lake: Lake, *, start: dt.date, end: dt.date, since: dt.datetime) -> dt.datetime | None:
    """The latest window of ``[start, end)`` fetched after ``since``, if any: a later run's. Called by
    the publisher under the transactions lock it holds, so it reads without taking another."""
    if not lake.partitions("transaction_windows"):
        return None
    connection = lake.duckdb()
    try:
        row = connection.execute(
            "SELECT max(fetched_at) FROM read_parquet(?, hive_partitioning = true) "
            "WHERE start_date >= ? AND start_date < ? AND fetched_at > ?",
            [lake.glob("transaction_windows"), start, end, since],
        ).fetchone()
    finally:
        connection.close()
    latest = row[0] if row else None
    return latest.astimezone(dt.UTC) if latest is not None else None
