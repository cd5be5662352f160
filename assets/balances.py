"""``balances``: each account's live balance, observed now, with ``max_age``.

A balance is a point-in-time observation: it is written under the UTC date it was observed on, and
only by runs that reach the newest partition. A backfill of past partitions observes nothing (there
is no way to ask Synctera for a past balance) and says so. One account's failure becomes a row with
``error`` set; it never fails the run or loses the other accounts.
"""

import asyncio
import datetime as dt

import dagster as dg

from assets.common import (
    GROUP,
    SINGLE_RUN,
    Stopwatch,
    api_metadata,
    is_current,
    latest_accounts,
    markdown_preview,
    run_async,
    run_dates,
)
from assets.resources import IngestResource, LakeResource, SyncteraApi
from pipelines import records
from pipelines.lake import split_by_date
from pipelines.records import BalanceObservation
from pipelines.synctera import AsyncSyncteraClient, StatsSnapshot, SyncteraError
from pipelines.warehouse import refresh_views

ERROR_RATE_CHECK = "balance_error_rate"


async def observe(client: AsyncSyncteraClient, account_id: str, max_age: int) -> BalanceObservation:
    try:
        balance = await client.get_external_account_balance(account_id, max_age=max_age)
    except SyncteraError as exc:
        return BalanceObservation.failed(account_id, dt.datetime.now(dt.UTC), max_age, exc)
    return BalanceObservation(account_id, dt.datetime.now(dt.UTC), max_age, balance)


def build_balances(
    partitions_def: dg.PartitionsDefinition,
    external_accounts: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        name="balances",
        partitions_def=partitions_def,
        backfill_policy=SINGLE_RUN,
        deps=[external_accounts],
        group_name=GROUP,
        kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec(ERROR_RATE_CHECK, asset="balances")],
        description="Live balances (get_external_account_balance with max_age) observed by runs that reach "
        "the newest partition, under the UTC date observed; failures are rows with error set.",
    )
    def balances(
        context: dg.AssetExecutionContext, synctera: SyncteraApi, lake: LakeResource, ingest: IngestResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        clock = Stopwatch()
        run_dates(context)  # refuse a range outside the definition before any call
        if not is_current(context):
            message = (
                f"backfill of past partitions ({context.partition_key_range.start}.."
                f"{context.partition_key_range.end}): balances are live-only, none recorded for past dates"
            )
            context.log.info(message)
            return dg.MaterializeResult(
                metadata={"balances_observed": 0, "skipped": message},
                check_results=[
                    dg.AssetCheckResult(check_name=ERROR_RATE_CHECK, passed=True, description=message)
                ],
            )
        store = lake.lake
        account_ids, _ = latest_accounts(store)

        async def fetch() -> tuple[list[BalanceObservation], StatsSnapshot]:
            async with synctera.client() as client:
                observations = await asyncio.gather(
                    *(observe(client, a, ingest.max_age) for a in account_ids)
                )
                return list(observations), client.stats_snapshot()

        observations, stats = run_async(fetch())
        table = records.balances_table(observations, run_id=context.run.run_id)
        days = sorted({o.observed_at.date() for o in observations})
        with store.lock("balances"):
            # Per day, only the accounts observed that day are replaced: a run that crosses
            # midnight UTC never erases the earlier observations of the day it started on.
            for day, rows in split_by_date(table):
                observed = [o.account_id for o in observations if o.observed_at.date() == day]
                store.replace_accounts("balances", [day], rows, accounts=observed)
            refresh_views(store)
        failed = [o for o in observations if o.error is not None]
        for o in failed:
            context.log.warning(f"balance of {o.account_id} unavailable: {o.error}")
        rate = len(failed) / len(observations) if observations else 0.0
        context.log.info(f"balances: {len(observations) - len(failed)} observed, {len(failed)} errors")
        return dg.MaterializeResult(
            metadata={
                "balances_observed": len(observations),
                "errors": len(failed),
                "error_rate": round(rate, 4),
                "observed_dates": ", ".join(d.isoformat() for d in days),
                **clock.metadata(),
                "preview": markdown_preview(
                    table, ["account_id", "current", "available", "currency", "error_code"]
                ),
                **api_metadata(stats),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=ERROR_RATE_CHECK,
                    passed=rate <= ingest.balance_error_threshold,
                    metadata={"error_rate": round(rate, 4), "threshold": ingest.balance_error_threshold},
                )
            ],
        )

    return balances
