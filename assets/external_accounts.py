"""``external_accounts``: a snapshot of every linked account, paged to the last page."""

import datetime as dt

import dagster as dg

from assets.common import GROUP, SINGLE_RUN, Stopwatch, api_metadata, markdown_preview, run_async, run_dates
from assets.resources import IngestResource, LakeResource, SyncteraApi
from pipelines import records
from pipelines.synctera import StatsSnapshot
from pipelines.synctera.models import ExternalAccount
from pipelines.warehouse import refresh_views

LISTING_CHECK = "listing_reached_last_page"


def build_external_accounts(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="external_accounts",
        partitions_def=partitions_def,
        backfill_policy=SINGLE_RUN,
        group_name=GROUP,
        kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec(LISTING_CHECK, asset="external_accounts")],
        description="Every external account (list_external_accounts to the last page), as observed on the "
        "day of the run: written under the UTC date it was observed on.",
    )
    def external_accounts(
        context: dg.AssetExecutionContext, synctera: SyncteraApi, lake: LakeResource, ingest: IngestResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        clock = Stopwatch()
        run_dates(context)  # refuse a range outside the definition before any call

        async def listing() -> tuple[list[ExternalAccount], int, int, StatsSnapshot]:
            seen: dict[str, ExternalAccount] = {}
            pages = repeats = 0
            async with synctera.client() as client:
                async for page in client.iter_external_account_pages(include_history=ingest.include_history):
                    pages += 1
                    for account in page.external_accounts:
                        repeats += account.id in seen
                        seen.setdefault(account.id, account)
                    context.log.info(f"external_accounts: page {pages}, {len(seen)} accounts so far")
                return list(seen.values()), pages, repeats, client.stats_snapshot()

        accounts, pages, repeats, stats = run_async(listing())
        observed_at = dt.datetime.now(dt.UTC)
        table = records.accounts_table(accounts, observed_at=observed_at, run_id=context.run.run_id)
        with lake.lake.lock("external_accounts"):
            target = lake.lake.replace_partition("external_accounts", observed_at.date(), table)
            refresh_views(lake.lake)
        if repeats:
            context.log.warning(f"the listing repeated {repeats} accounts across pages; each is kept once")
        context.log.info(f"external_accounts: {len(accounts)} accounts in {pages} pages -> {target}")
        return dg.MaterializeResult(
            metadata={
                "accounts": len(accounts),
                "pages": pages,
                "repeated_accounts": repeats,
                "observed_at": observed_at.isoformat(),
                "path": str(target),
                **clock.metadata(),
                "preview": markdown_preview(table, ["account_id", "status", "type", "currency"]),
                **api_metadata(stats),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=LISTING_CHECK,
                    passed=repeats == 0,
                    metadata={"pages": pages, "repeated_accounts": repeats},
                    description="Paged until a page came back without next_page_token.",
                )
            ],
        )

    return external_accounts
