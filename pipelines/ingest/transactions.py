"""A run of transactions over ``[start, end)``: every account fetched, every day's partition replaced.

Rows go to a spool on disk window by window (memory stays flat however long the range or many the
accounts); once every account is fetched, each day's partition is written from the spool, then the
ledger, then the views are refreshed. Each day's own figures are kept for its partition's metadata.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipelines import ledger
from pipelines.day_buffer import DayBuffer
from pipelines.ingest import Cancelled, ClientFactory, Emit, run_cancellable
from pipelines.lake import TRANSACTIONS, Lake, days_between
from pipelines.memory import release_free_memory
from pipelines.progress import INTERVAL_SECONDS, Progress
from pipelines.spool import DateSpool
from pipelines.synctera import StatsSnapshot
from pipelines.synctera.rows import Transaction
from pipelines.transactions import AccountTransactions, WindowRecord, fetch_all_accounts
from pipelines.warehouse import publishing
from pipelines.windows import Outcome

TABLE = "transactions"


@dataclass
class DayFigures:
    """What a run wrote for one date: its partition's own metadata."""

    rows: int = 0  # this run's rows for the day
    accounts_with_rows: int = 0
    partition_rows: int = 0  # the partition as written: also other accounts' rows it kept
    windows_complete: int = 0  # windows under the cap that covered this day
    flagged_accounts: list[str] = field(default_factory=list)  # single days that returned the cap


@dataclass(frozen=True)
class TransactionsSummary:
    start: dt.date
    end: dt.date  # exclusive
    accounts: int
    snapshot_day: dt.date
    accounts_with_prior_density: int
    rows: int
    calls: int
    windows_split: int
    duplicates_dropped: int  # identical rows the API repeated within a window
    duplicate_keys: int  # keys found twice in the partitions written (must be 0)
    flagged: tuple[tuple[dt.date, str], ...]  # (day, account) that returned the cap alone
    days: Mapping[dt.date, DayFigures]
    stats: StatsSnapshot


def _row_date(row: Transaction) -> dt.date:
    day = row.date
    assert day is not None  # checked when the window came back
    return day


def duplicate_keys(blocks: list[list[Path]]) -> int:
    """Keys written more than once, counted block by block of partitions so that memory stays flat
    however many rows the run wrote. (An id in two blocks of one run cannot be written: fetching
    fails on an id seen in two windows of an account.) DuckDB, already loaded for the views, adds
    less memory than Arrow's group-by, which kept several times as much."""
    spill = tempfile.TemporaryDirectory(prefix="synctera-dup-check-")
    connection = duckdb.connect(config={"memory_limit": "32MB", "threads": 1, "temp_directory": spill.name})
    duplicates = 0
    try:
        for paths in blocks:
            if not paths:
                continue
            row = connection.execute(
                "SELECT count(*) FROM (SELECT account_id, transaction_id FROM read_parquet(?) "
                "GROUP BY ALL HAVING count(*) > 1)",
                [[str(p) for p in paths]],
            ).fetchone()
            duplicates += int(row[0]) if row else 0
    finally:
        connection.close()
        spill.cleanup()
    return duplicates


def _figures(days: list[dt.date], results: list[AccountTransactions]) -> dict[dt.date, DayFigures]:
    """Each day's windows and flagged accounts, from the ledger of this run."""
    figures = {day: DayFigures() for day in days}
    for result in results:
        for record in result.windows:
            if record.outcome is Outcome.COMPLETE:
                for day in days_between(record.window.start, record.window.end):
                    figures[day].windows_complete += 1
        for day in result.flagged_days:
            figures[day].flagged_accounts.append(result.account_id)
    return figures


def ingest_transactions(
    client: ClientFactory,
    lake: Lake,
    *,
    start: dt.date,
    end: dt.date,
    account_ids: list[str],
    snapshot_day: dt.date,
    concurrency: int,
    run_id: str,
    emit: Emit,
    progress_seconds: float = INTERVAL_SECONDS,
    cancelled: Cancelled | None = None,
) -> TransactionsSummary:
    """Fetch every account's transactions dated in ``[start, end)`` and replace those partitions."""
    lake.clear_staging()
    rates = ledger.prior_rates(lake, around=start)
    known_days = ledger.prior_days(lake, start=start, end=end)
    emit(
        f"transactions {start}..{end} (end exclusive) for {len(account_ids)} accounts of the "
        f"{snapshot_day} snapshot; {len(rates)} have a density from earlier runs"
    )
    days = days_between(start, end)
    rows_by_day: Counter[dt.date] = Counter()
    accounts_by_day: Counter[dt.date] = Counter()
    progress = Progress("transactions", len(account_ids))

    with DateSpool(lake.staging_dir, TRANSACTIONS, start, end) as spool:
        buffer = DayBuffer(spool.add, run_id=run_id)

        def to_spool(account_id: str, window: WindowRecord, rows: list[Transaction]) -> None:
            # In date order, the rows are cut by day without a copy (Arrow's take costs ~1 µs a
            # row; sorting the rows a tenth of that).
            rows.sort(key=_row_date)
            per_day = Counter(map(_row_date, rows))
            rows_by_day.update(per_day)
            accounts_by_day.update(per_day.keys())  # kept windows of an account never overlap
            buffer.add(account_id, window.fetched_at, rows)

        async def fetch() -> tuple[list[AccountTransactions], StatsSnapshot]:
            async with client() as api, progress.reporting(emit, progress_seconds):
                results = await fetch_all_accounts(
                    api,
                    account_ids,
                    start,
                    end,
                    prior_rates=rates,
                    prior_days=known_days,
                    concurrency=concurrency,
                    sink=to_spool,
                    progress=progress,
                )
                return results, api.stats_snapshot()

        results, stats = run_cancellable(fetch(), cancelled, what="transactions")
        buffer.flush()
        release_free_memory()  # the fetch's freed rows, before the write phase allocates its own
        windows = [w for r in results for w in r.windows]
        emit(f"transactions: {spool.rows} rows fetched; writing {len(days)} partitions")
        written: list[list[Path]] = []
        with publishing(lake, TABLE):  # a concurrent run writing these days waits for this one
            for block_days, rows in spool.blocks():
                written.append(lake.replace_accounts(TABLE, block_days, rows, accounts=account_ids))
                del rows
                release_free_memory(collect=False, trim=False)  # the block's Arrow buffers
            lake.replace_accounts(
                "transaction_windows",
                days,
                ledger.windows_table(windows, run_id=run_id),
                accounts=account_ids,
            )
            # Read back under the lock: a concurrent run may replace these files the moment it is
            # released, and a scan that spans a replacement fails (DuckDB reopens files mid-query).
            written_duplicates = duplicate_keys(written)
            partition_rows = {
                path: pq.ParquetFile(path).metadata.num_rows for block in written for path in block
            }
        rows_written = spool.rows

    figures = _figures(days, results)
    for day in days:
        figures[day].rows = rows_by_day[day]
        figures[day].accounts_with_rows = accounts_by_day[day]
    for path, held in partition_rows.items():
        figures[dt.date.fromisoformat(path.parent.name.removeprefix("date="))].partition_rows = held
    flagged = tuple(sorted((day, r.account_id) for r in results for day in r.flagged_days))
    return TransactionsSummary(
        start=start,
        end=end,
        accounts=len(account_ids),
        snapshot_day=snapshot_day,
        accounts_with_prior_density=len(rates),
        rows=rows_written,
        calls=len(windows),
        windows_split=sum(r.windows_split for r in results),
        duplicates_dropped=sum(r.duplicates_dropped for r in results),
        duplicate_keys=written_duplicates,
        flagged=flagged,
        days=figures,
        stats=stats,
    )
