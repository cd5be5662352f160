"""A run of transactions over ``[start, end)``: every account fetched, every day's partition replaced.

Two steps, so that a backfill's accounts can be fetched in parallel on several machines:
``fetch_shard`` fetches the accounts of one shard, spooling rows to disk window by window (memory
stays flat however long the range or many the accounts), and seals the spool with the shard's ledger
and figures under the lake's ``.shards/``; ``publish`` then writes each day's partition from every
shard's spool, then the ledger, then refreshes the views. ``ingest_transactions`` does both in one
process with one shard. Each day's own figures are kept for its partition's metadata.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines import ledger
from pipelines.day_buffer import DayBuffer
from pipelines.ingest import Cancelled, ClientFactory, Emit, run_cancellable
from pipelines.ingest.seals import FIGURES_FILE, ShardFetch, ShardMismatchError, shard_dir
from pipelines.lake import READER_MEMORY, TRANSACTION_WINDOWS, TRANSACTIONS, Lake, days_between
from pipelines.memory import release_free_memory
from pipelines.progress import INTERVAL_SECONDS, Progress
from pipelines.shards import Shard
from pipelines.spool import DateSpool, sealed_blocks
from pipelines.synctera import StatsSnapshot
from pipelines.synctera.rows import ROW_DATE, Transaction
from pipelines.synctera.stats import combined
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
    fetch_cpu_seconds: float  # every shard's, summed
    fetch_wall_seconds: float  # from the first shard's start to the last one's end
    flagged: tuple[tuple[dt.date, str], ...]  # (day, account) that returned the cap alone
    days: Mapping[dt.date, DayFigures]
    stats: StatsSnapshot


def duplicate_keys(lake: Lake, blocks: list[list[str]]) -> int:
    """Keys written more than once, counted block by block of partitions so that memory stays flat
    however many rows the run wrote. (An id in two blocks of one run cannot be written: fetching
    fails on an id seen in two windows of an account.) DuckDB, already loaded for the views, adds
    less memory than Arrow's group-by, which kept several times as much."""

    def count(config: dict[str, Any]) -> int:
        duplicates = 0
        connection = lake.duckdb(config)
        try:
            for paths in blocks:
                if not paths:
                    continue
                row = connection.execute(
                    "SELECT count(*) FROM (SELECT account_id, transaction_id FROM read_parquet(?) "
                    "GROUP BY ALL HAVING count(*) > 1)",
                    [paths],
                ).fetchone()
                duplicates += int(row[0]) if row else 0
        finally:
            connection.close()
        return duplicates

    return lake.read_bounded(count, limits=("32MiB", *READER_MEMORY))


def fetch_shard(
    client: ClientFactory,
    lake: Lake,
    *,
    start: dt.date,
    end: dt.date,
    account_ids: list[str],
    snapshot_day: dt.date,
    shard: Shard,
    target: Path,
    concurrency: int,
    run_id: str,
    emit: Emit,
    progress_seconds: float = INTERVAL_SECONDS,
    cancelled: Cancelled | None = None,
) -> ShardFetch:
    """Fetch the transactions dated in ``[start, end)`` of the accounts of ``account_ids`` (the whole
    snapshot) that fall in ``shard``, and seal them at ``target``. Nothing is published."""
    began, began_at, began_cpu = time.monotonic(), time.time(), time.process_time()
    lake.clear_staging()
    mine = shard.accounts(account_ids)
    rates = ledger.prior_rates(lake, around=start)
    known_days = ledger.prior_days(lake, start=start, end=end)
    of_shard = f" ({shard}: {len(mine)} accounts)" if shard.count > 1 else ""
    emit(
        f"transactions {start}..{end} (end exclusive) for {len(account_ids)} accounts of the "
        f"{snapshot_day} snapshot{of_shard}; {sum(a in rates for a in mine)} have a density from "
        "earlier runs"
    )
    rows_by_day: Counter[dt.date] = Counter()
    accounts_by_day: Counter[dt.date] = Counter()
    progress = Progress("transactions", len(mine))

    with DateSpool(lake.staging_dir, TRANSACTIONS, start, end) as spool:
        buffer = DayBuffer(spool.add, run_id=run_id)

        def to_spool(account_id: str, window: WindowRecord, rows: list[Transaction]) -> None:
            # In date order, the rows are cut by day without a copy (Arrow's take costs ~1 µs a
            # row; sorting the rows a tenth of that).
            rows.sort(key=ROW_DATE)
            per_day = Counter(map(ROW_DATE, rows))
            rows_by_day.update(per_day)
            accounts_by_day.update(per_day.keys())  # kept windows of an account never overlap
            buffer.add(account_id, window.fetched_at, rows)

        async def fetch() -> tuple[list[AccountTransactions], StatsSnapshot]:
            async with client() as api, progress.reporting(emit, progress_seconds):
                results = await fetch_all_accounts(
                    api,
                    mine,
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
        complete_by_day: Counter[dt.date] = Counter()
        for record in windows:
            if record.outcome is Outcome.COMPLETE:
                complete_by_day.update(days_between(record.window.start, record.window.end))
        spool.seal(target)
        fetched = ShardFetch(
            directory=target,
            shard=shard,
            start=start,
            end=end,
            snapshot_day=snapshot_day,
            accounts=tuple(mine),
            accounts_with_prior_density=sum(a in rates for a in mine),
            rows=spool.rows,
            calls=len(windows),
            windows_split=sum(r.windows_split for r in results),
            duplicates_dropped=sum(r.duplicates_dropped for r in results),
            flagged=tuple(sorted((day, r.account_id) for r in results for day in r.flagged_days)),
            rows_by_day=dict(rows_by_day),
            accounts_by_day=dict(accounts_by_day),
            windows_complete_by_day=dict(complete_by_day),
            stats=stats,
            block_rows=dict(spool.block_rows),
            block_bytes=dict(spool.block_bytes),
            began_at=began_at,
            cpu_seconds=time.process_time() - began_cpu,
            wall_seconds=time.monotonic() - began,
        )
        fetched.save(ledger.windows_table(windows, run_id=run_id))
        lake.share(target, last=FIGURES_FILE)  # the publish step may run on another machine
    emit(f"transactions{of_shard}: {fetched.rows} rows fetched with {fetched.calls} calls; sealed")
    return fetched


def publish(
    lake: Lake, fetches: list[ShardFetch], *, account_ids: list[str], snapshot_day: dt.date, emit: Emit
) -> TransactionsSummary:
    """Replace every day's partition of the shards' range with the rows of all ``fetches``, then the
    ledger, then refresh the views; the shards' spools are removed once published.

    ``fetches`` must be every shard of one split of ``account_ids`` (the ``snapshot_day`` listing),
    over one range: a missing shard would publish days without its accounts' rows, an account fetched
    by a shard it is not in would lose or double rows; both are refused, naming the accounts.
    """
    if not fetches:
        raise ShardMismatchError("no shard to publish")
    first = fetches[0]
    start, end, count = first.start, first.end, first.shard.count
    if {(f.start, f.end, f.snapshot_day, f.shard.count) for f in fetches} != {
        (start, end, snapshot_day, count)
    } or sorted(f.shard.index for f in fetches) != list(range(count)):
        found = ", ".join(
            f"{f.shard} over {f.start}..{f.end} of the {f.snapshot_day} listing" for f in fetches
        )
        raise ShardMismatchError(f"the shards are not one split of one run: {found}")
    covered = {a for f in fetches for a in f.accounts}
    if missing := sorted(set(account_ids) - covered):
        raise ShardMismatchError(
            f"{len(missing)} accounts of the snapshot are in no shard: {', '.join(missing[:20])}"
        )
    for fetched in fetches:
        if stray := sorted(set(fetched.accounts) ^ set(fetched.shard.accounts(account_ids))):
            raise ShardMismatchError(
                f"{fetched.shard} did not fetch exactly its accounts of the listing: {', '.join(stray[:20])}"
            )
    days = days_between(start, end)
    emit(f"transactions: {sum(f.rows for f in fetches)} rows fetched; writing {len(days)} partitions")
    written: list[list[str]] = []
    with publishing(lake, TABLE):  # a concurrent run writing these days waits for this one
        # A re-execution of an old run would put back what it saw then, over later postings: refused
        # once a run that fetched after all of these shards had finished has published these days.
        fetched_by = dt.datetime.fromtimestamp(max(f.began_at + f.wall_seconds for f in fetches), dt.UTC)
        if (newer := ledger.fetched_since(lake, start=start, end=end, since=fetched_by)) is not None:
            raise ShardMismatchError(
                f"these shards were fetched by {fetched_by:%Y-%m-%d %H:%M:%S} UTC, and a later run "
                f"published days of {start}..{end} at {newer:%Y-%m-%d %H:%M:%S} UTC: run the range "
                "again instead of re-executing the old run"
            )
        blocks = sealed_blocks(
            [(f.directory, f.block_rows, f.block_bytes) for f in fetches], TRANSACTIONS, start, end
        )
        for block_days, rows in blocks:
            written.append(lake.replace_accounts(TABLE, block_days, rows, accounts=account_ids))
            del rows
            release_free_memory(collect=False, trim=False)  # the block's Arrow buffers
        windows = pa.concat_tables([f.windows() for f in fetches]).cast(TRANSACTION_WINDOWS)
        lake.replace_accounts("transaction_windows", days, windows, accounts=account_ids)
        # Read back under the lock: a concurrent run may replace these files the moment it is
        # released, and a scan that spans a replacement fails (DuckDB reopens files mid-query).
        written_duplicates = duplicate_keys(lake, written)
        partition_rows = {day: lake.partition_rows(TABLE, day) for day in days}
    for run_dir in {f.directory.parent for f in fetches}:
        lake.remove_run_dir(run_dir)

    figures = {day: DayFigures() for day in days}
    flagged = tuple(sorted(pair for f in fetches for pair in f.flagged))
    for day, account_id in flagged:
        figures[day].flagged_accounts.append(account_id)
    for fetched in fetches:
        for day, n in fetched.rows_by_day.items():
            figures[day].rows += n
        for day, n in fetched.accounts_by_day.items():
            figures[day].accounts_with_rows += n
        for day, n in fetched.windows_complete_by_day.items():
            if day in figures:
                figures[day].windows_complete += n
    for day, held in partition_rows.items():
        figures[day].partition_rows = held
    return TransactionsSummary(
        start=start,
        end=end,
        accounts=len(account_ids),
        snapshot_day=first.snapshot_day,
        accounts_with_prior_density=sum(f.accounts_with_prior_density for f in fetches),
        rows=sum(f.rows for f in fetches),
        calls=sum(f.calls for f in fetches),
        windows_split=sum(f.windows_split for f in fetches),
        duplicates_dropped=sum(f.duplicates_dropped for f in fetches),
        duplicate_keys=written_duplicates,
        fetch_cpu_seconds=sum(f.cpu_seconds for f in fetches),
        # From the first shard's start to the last one's end: right whether they ran at once or not.
        fetch_wall_seconds=max(f.began_at + f.wall_seconds for f in fetches)
        - min(f.began_at for f in fetches),
        flagged=flagged,
        days=figures,
        stats=combined(f.stats for f in fetches),
    )


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
    """Fetch every account's transactions dated in ``[start, end)`` and replace those partitions, in
    this process (one shard)."""
    shard = Shard(0, 1)
    fetched = fetch_shard(
        client,
        lake,
        start=start,
        end=end,
        account_ids=account_ids,
        snapshot_day=snapshot_day,
        shard=shard,
        target=shard_dir(lake, run_id, shard),
        concurrency=concurrency,
        run_id=run_id,
        emit=emit,
        progress_seconds=progress_seconds,
        cancelled=cancelled,
    )
    return publish(lake, [fetched], account_ids=account_ids, snapshot_day=snapshot_day, emit=emit)
