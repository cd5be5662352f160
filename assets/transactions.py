"""``transactions`` (and its ledger ``transaction_windows``): every account's transactions, proven complete.

Daily partitions: one run fetches each account's whole range with few calls (see
``pipelines.windows``), then replaces each date partition of the range atomically. Each partition's
materialization carries that day's own figures; the run's totals go on the run, once. Days that
returned the cap on their own are kept but flagged, and the ``no_incomplete_days`` check fails
naming each account and day.
"""

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from assets.common import (
    GROUP,
    SINGLE_RUN,
    Stopwatch,
    cancellation,
    concurrency_metadata,
    run_dates,
    tag_run,
)
from assets.external_accounts import listing_metadata
from assets.resources import IngestResource, LakeResource, SyncteraApi

if TYPE_CHECKING:
    from pipelines.ingest.transactions import TransactionsSummary
    from pipelines.shards import Shard

UNIQUE_CHECK = "unique_transaction_keys"
COMPLETE_CHECK = "no_incomplete_days"
CHECK_SPECS = [
    dg.AssetCheckSpec(
        UNIQUE_CHECK,
        asset="transactions",
        description="Each (account_id, transaction_id) appears once in the partitions the run wrote.",
    ),
    dg.AssetCheckSpec(
        COMPLETE_CHECK,
        asset="transactions",
        description="Every account-day of the run came from a window that returned fewer than 500 rows. "
        "A single day that returned 500 cannot be proven complete: it fails, naming account and day.",
    ),
]


def _first(flagged: tuple[tuple[dt.date, str], ...], shown: int = 20) -> str:
    """``acc on 2026-01-02, …`` for the first ``shown`` (date, account) pairs."""
    return ", ".join(f"{a} on {d}" for d, a in flagged[:shown]) + (" …" if len(flagged) > shown else "")


def _checks(summary: "TransactionsSummary") -> list[dg.AssetCheckResult]:
    flagged = summary.flagged
    days = len(summary.days)
    return [
        dg.AssetCheckResult(
            check_name=UNIQUE_CHECK,
            passed=summary.duplicate_keys == 0,
            metadata={"duplicate_keys": summary.duplicate_keys},
            description=f"{summary.rows:,} rows over {days} days: "
            + (
                "every (account_id, transaction_id) once."
                if not summary.duplicate_keys
                else f"{summary.duplicate_keys} keys appear more than once."
            ),
        ),
        dg.AssetCheckResult(
            check_name=COMPLETE_CHECK,
            passed=not flagged,
            metadata={
                "incomplete_days": len(flagged),
                "account_days": dg.MetadataValue.json(
                    [{"date": d.isoformat(), "account_id": a} for d, a in flagged]
                ),
            },
            description=f"All {summary.accounts} accounts × {days} days proven complete by windows under "
            "the 500-row cap."
            if not flagged
            else f"{len(flagged)} account-days returned the 500-row cap on a single day and cannot be "
            f"proven complete: {_first(flagged)}",
        ),
    ]


def _run_key(context: dg.AssetExecutionContext) -> str:
    """The run's root id: a re-execution from failure finds the shards its parent sealed."""
    return context.run.root_run_id or context.run.run_id


def build_transactions(
    partitions_def: dg.PartitionsDefinition, external_accounts: dg.AssetsDefinition, *, shards: int = 1
) -> dg.AssetsDefinition:
    """Three kinds of steps: ``accounts`` freezes the listing the run splits, one ``shard_<i>_of_<n>``
    per shard fetches its accounts (in parallel on Celery workers), ``publish`` writes the partitions."""
    from pipelines.shards import all_shards  # light: no pyarrow

    @dg.op(name="accounts", ins={"listing": dg.In(dg.Nothing)}, out=dg.Out(dg.Nothing))
    def accounts(
        context: dg.AssetExecutionContext, synctera: SyncteraApi, lake: LakeResource, ingest: IngestResource
    ) -> None:
        from pipelines.ingest.listing import NoSnapshotError, latest_accounts, take_listing
        from pipelines.ingest.seals import freeze_accounts

        run_dates(context)  # a bad range is refused before anything is asked of the API
        store = lake.lake
        try:
            account_ids, snapshot_day = latest_accounts(store)
        except NoSnapshotError:
            # Launched alone on a fresh lake (e.g. from the asset's own page): take the listing first,
            # in this run, and record it as external_accounts' materialization.
            context.log.info("no external_accounts snapshot yet: taking the listing first")
            listing = take_listing(
                synctera.client,
                store,
                include_history=ingest.include_history,
                max_pages=ingest.max_listing_pages,
                run_id=context.run.run_id,
                emit=context.log.info,
                cancelled=cancellation(context),
            )
            context.log_event(
                dg.AssetMaterialization("external_accounts", metadata=listing_metadata(listing))
            )
            account_ids, snapshot_day = latest_accounts(store)
        freeze_accounts(store, _run_key(context), account_ids, snapshot_day)
        context.log.info(f"{len(account_ids)} accounts of the {snapshot_day} snapshot, in {shards} shard(s)")

    def fetch_op(shard: "Shard") -> dg.OpDefinition:
        @dg.op(
            name=f"shard_{shard.index}_of_{shard.count}",
            ins={"accounts": dg.In(dg.Nothing)},
            out=dg.Out(dg.Nothing),
        )
        def fetch(
            context: dg.AssetExecutionContext,
            synctera: SyncteraApi,
            lake: LakeResource,
            ingest: IngestResource,
        ) -> None:
            from pipelines.ingest.seals import frozen_accounts, shard_dir
            from pipelines.ingest.transactions import fetch_shard

            start, end = run_dates(context)
            store, key = lake.lake, _run_key(context)
            account_ids, snapshot_day = frozen_accounts(store, key)
            fetch_shard(
                synctera.client,
                store,
                start=start,
                end=end,
                account_ids=account_ids,
                snapshot_day=snapshot_day,
                shard=shard,
                target=shard_dir(store, key, shard),
                concurrency=ingest.account_concurrency,
                run_id=context.run.run_id,
                emit=context.log.info,
                progress_seconds=ingest.progress_seconds,
                cancelled=cancellation(context),
            )

        return fetch

    check_outs = {f"transactions_{spec.name}": dg.Out(dg.Nothing) for spec in CHECK_SPECS}

    @dg.op(
        name="publish", ins={"shards": dg.In(dg.Nothing)}, out={"result": dg.Out(dg.Nothing), **check_outs}
    )
    def publish(context: dg.AssetExecutionContext, lake: LakeResource) -> Iterator[Any]:
        from pipelines.ingest.seals import ShardMismatchError, frozen_accounts, sealed_shard
        from pipelines.ingest.transactions import publish as publish_shards

        clock = Stopwatch()
        start, end = run_dates(context)
        store, key = lake.lake, _run_key(context)
        account_ids, snapshot_day = frozen_accounts(store, key)
        fetches = [sealed_shard(store, key, s) for s in all_shards(shards)]
        if any((f.start, f.end) != (start, end) for f in fetches):
            raise ShardMismatchError(f"the sealed shards are not of this run's range {start}..{end}")
        summary = publish_shards(
            store, fetches, account_ids=account_ids, snapshot_day=snapshot_day, emit=context.log.info
        )
        if summary.flagged:
            # One event, not one per account-day: at a year of 2,000 accounts there are about a
            # thousand, and each event costs Dagster a write. The check lists them all.
            context.log.warning(
                f"incomplete: {len(summary.flagged)} account-days returned the 500-row cap on a single "
                f"day (listed in the {COMPLETE_CHECK} check): {_first(summary.flagged)}"
            )
        for day, figures in summary.days.items():
            context.add_asset_metadata(
                {
                    "rows_written": figures.rows,
                    "partition_rows": figures.partition_rows,
                    "accounts_with_rows": figures.accounts_with_rows,
                    "windows_complete": figures.windows_complete,
                    "incomplete_accounts": len(figures.flagged_accounts),
                    "incomplete_account_ids": ", ".join(figures.flagged_accounts) or "none",
                },
                partition_key=day.isoformat(),
            )
        totals = {
            "transactions_rows": summary.rows,
            "transactions_days": len(summary.days),
            "transactions_accounts": summary.accounts,
            "transactions_shards": shards,
            "transaction_calls": summary.calls,
            "windows_split": summary.windows_split,
            "incomplete_account_days": len(summary.flagged),
            "api_requests": summary.stats.total_requests,
            "api_seconds": round(summary.stats.api_seconds, 3),
            "api_retries": summary.stats.total_retries,
            **concurrency_metadata(summary.stats),
            # The shards' fetches (CPU summed, the slowest's wall) and this publish step's.
            "transactions_cpu_seconds": round(summary.fetch_cpu_seconds + clock.metadata()["cpu_seconds"], 3),
            "transactions_duration_seconds": round(
                summary.fetch_wall_seconds + clock.metadata()["duration_seconds"], 3
            ),
        }
        tag_run(context, totals)
        context.log.info("transactions run totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
        yield dg.Output(
            None,
            "result",
            metadata={
                "run_range": f"{start}..{summary.end - dt.timedelta(days=1)}",
                "snapshot_day": summary.snapshot_day.isoformat(),
            },
        )
        yield from _checks(summary)

    @dg.graph_asset(
        name="transactions",
        partitions_def=partitions_def,
        backfill_policy=SINGLE_RUN,
        ins={"external_accounts": dg.AssetIn(external_accounts.key, dagster_type=dg.Nothing)},
        group_name=GROUP,
        kinds={"parquet"},
        check_specs=CHECK_SPECS,
        description="Transactions by their date (UTC days; the last partition is yesterday), each "
        "(account_id, transaction_id) once, for every account of the latest external_accounts snapshot, "
        "with the ledger of windows (transaction_windows) that proves each day complete or flags it. "
        f"A range of any length is one run; its accounts are fetched in {shards} shard(s) "
        "(SYNCTERA_SHARDS), each a step, then published at once.",
    )
    def transactions(external_accounts: Any) -> Any:
        listing = accounts(external_accounts)
        published = publish([fetch_op(shard)(listing) for shard in all_shards(shards)])
        return {"result": published.result, **{name: getattr(published, name) for name in check_outs}}

    return transactions
