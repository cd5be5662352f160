"""``transactions`` (and its ledger ``transaction_windows``): every account's transactions, proven complete.

One run fetches each account's whole range with few calls (see ``pipelines.windows``), then replaces
each date partition of the range atomically. Days that returned the cap on their own are kept but
flagged, and the ``no_incomplete_days`` check fails naming each account and day.
"""

import datetime as dt
import tempfile
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa

from assets.common import (
    GROUP,
    SINGLE_RUN,
    Stopwatch,
    api_metadata,
    latest_accounts,
    markdown_preview,
    run_async,
    run_dates,
)
from assets.resources import IngestResource, LakeResource, SyncteraApi
from pipelines import ledger, records
from pipelines.lake import TRANSACTIONS, days_between
from pipelines.memory import release_free_memory
from pipelines.spool import DateSpool
from pipelines.synctera import StatsSnapshot
from pipelines.synctera.models import TransactionRow
from pipelines.transactions import AccountTransactions, WindowRecord, fetch_all_accounts
from pipelines.warehouse import refresh_views

UNIQUE_CHECK = "unique_transaction_keys"
COMPLETE_CHECK = "no_incomplete_days"


def _row_date(row: TransactionRow) -> dt.date:
    day = row["date"]
    assert day is not None  # checked when the window came back
    return day


def _duplicate_keys(blocks: list[list[Path]]) -> int:
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


def _first(flagged: list[tuple[str, str]], shown: int = 20) -> str:
    """``acc on 2026-01-02, …`` for the first ``shown`` (date, account) pairs."""
    return ", ".join(f"{a} on {d}" for d, a in flagged[:shown]) + (" …" if len(flagged) > shown else "")


def build_transactions(
    partitions_def: dg.PartitionsDefinition,
    external_accounts: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        name="transactions",
        partitions_def=partitions_def,
        backfill_policy=SINGLE_RUN,
        deps=[external_accounts],
        group_name=GROUP,
        kinds={"parquet"},
        check_specs=[
            dg.AssetCheckSpec(UNIQUE_CHECK, asset="transactions"),
            dg.AssetCheckSpec(COMPLETE_CHECK, asset="transactions"),
        ],
        description="Transactions by their date, each (account_id, transaction_id) once, with the ledger "
        "of windows (transaction_windows) that proves every day complete or flags it.",
    )
    def transactions(
        context: dg.AssetExecutionContext, synctera: SyncteraApi, lake: LakeResource, ingest: IngestResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        clock = Stopwatch()
        store = lake.lake
        store.clear_staging()
        start, end = run_dates(context)
        account_ids, snapshot_day = latest_accounts(store)
        rates = ledger.prior_rates(store, around=start)
        context.log.info(
            f"transactions {start}..{end} (end exclusive) for {len(account_ids)} accounts of the "
            f"{snapshot_day} snapshot; {len(rates)} have a density from earlier runs"
        )

        # Rows go to disk window by window (memory stays flat however long the range or many the
        # accounts); the partitions are written once every account is fetched.
        with DateSpool(store.staging_dir, TRANSACTIONS, start, end) as spool:
            preview: list[pa.Table] = []

            def to_spool(account_id: str, window: WindowRecord, rows: list[TransactionRow]) -> None:
                # In date order, the spool cuts the table by day without a copy (Arrow's take costs
                # ~1 µs a row; sorting the dicts a tenth of that).
                rows.sort(key=_row_date)
                table = records.transactions_table(
                    account_id, rows, fetched_at=window.fetched_at, run_id=context.run.run_id
                )
                spool.add(table)
                if not preview and table.num_rows:
                    preview.append(table.slice(0, 5))

            async def fetch() -> tuple[list[AccountTransactions], StatsSnapshot]:
                async with synctera.client() as client:
                    results = await fetch_all_accounts(
                        client,
                        account_ids,
                        start,
                        end,
                        prior_rates=rates,
                        concurrency=ingest.account_concurrency,
                        sink=to_spool,
                    )
                    return results, client.stats_snapshot()

            results, stats = run_async(fetch())
            release_free_memory()  # the fetch's freed rows, before the write phase allocates its own
            days = days_between(start, end)
            windows = [w for r in results for w in r.windows]
            context.log.info(f"transactions: {spool.rows} rows fetched; writing {len(days)} partitions")
            written: list[list[Path]] = []
            with store.lock("transactions"):  # a concurrent run writing these days waits for this one
                for block_days, rows in spool.blocks():
                    written.append(
                        store.replace_accounts("transactions", block_days, rows, accounts=account_ids)
                    )
                    del rows
                    release_free_memory(collect=False, trim=False)  # the block's Arrow buffers
                store.replace_accounts(
                    "transaction_windows",
                    days,
                    ledger.windows_table(windows, run_id=context.run.run_id),
                    accounts=account_ids,
                )
                refresh_views(store)
            rows_written = spool.rows

        flagged = sorted((day.isoformat(), r.account_id) for r in results for day in r.flagged_days)
        if flagged:
            # One event, not one per account-day: at a year of 2,000 accounts there are about a
            # thousand, and each event costs Dagster a SQLite write. The check lists them all.
            context.log.warning(
                f"incomplete: {len(flagged)} account-days returned the 500-row cap on a single day "
                f"(listed in the {COMPLETE_CHECK} check): {_first(flagged)}"
            )
        duplicates = _duplicate_keys(written)
        calls = len(windows)
        split = sum(r.windows_split for r in results)
        context.log.info(
            f"transactions: {rows_written} rows in {len(days)} partitions, {calls} calls, "
            f"{split} windows split, {len(flagged)} incomplete account-days"
        )
        return dg.MaterializeResult(
            metadata={
                "rows_written": rows_written,
                "partitions_written": len(days),
                "accounts": len(account_ids),
                "transaction_calls": calls,
                "windows_split": split,
                "incomplete_days": len(flagged),
                "duplicates_dropped": sum(r.duplicates_dropped for r in results),
                "range": f"{start}..{days[-1]}",
                **clock.metadata(),
                "preview": markdown_preview(
                    preview[0] if preview else TRANSACTIONS.empty_table(),
                    ["account_id", "transaction_id", "date", "amount", "merchant_name"],
                ),
                **api_metadata(stats),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=UNIQUE_CHECK,
                    passed=duplicates == 0,
                    metadata={"duplicate_keys": duplicates},
                    description="Each (account_id, transaction_id) appears once in the partitions written.",
                ),
                dg.AssetCheckResult(
                    check_name=COMPLETE_CHECK,
                    passed=not flagged,
                    metadata={
                        "incomplete_days": len(flagged),
                        "account_days": dg.MetadataValue.json(
                            [{"date": d, "account_id": a} for d, a in flagged]
                        ),
                    },
                    description="Every account-day came from a window under the 500-row cap."
                    if not flagged
                    else f"Incomplete (capped single days): {_first(flagged)}",
                ),
            ],
        )

    return transactions
