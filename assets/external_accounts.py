"""``external_accounts``: the latest snapshot of every linked account, paged to the last page.

Not partitioned: a listing observes the accounts as they are now. Each snapshot is kept in the lake
under the UTC date it was taken, so the history stays queryable.
"""

from typing import TYPE_CHECKING, Any

import dagster as dg

from assets.common import (
    GROUP,
    SINGLE_RUN,
    Stopwatch,
    api_metadata,
    cancellation,
    markdown_preview,
    refuse_a_bad_run_range,
)
from assets.resources import IngestResource, LakeResource, SyncteraApi

if TYPE_CHECKING:
    from pipelines.ingest.listing import ListingSummary

LISTING_CHECK = "listing_reached_last_page"
CHECK_SPEC = dg.AssetCheckSpec(
    LISTING_CHECK,
    asset="external_accounts",
    description="The listing was paged until a page came back without next_page_token, and no account "
    "came back on two pages (a repeat means the server's pages shifted while we read them).",
)


def listing_metadata(summary: "ListingSummary") -> dict[str, Any]:
    return {
        "accounts": summary.accounts,
        "pages": summary.pages,
        "repeated_accounts": summary.repeated,
        "observed_at": summary.observed_at.isoformat(),
        "path": str(summary.path),
        "preview": markdown_preview(summary.table, ["account_id", "status", "type", "currency"]),
        **api_metadata(summary.stats),
    }


def listing_check(summary: "ListingSummary") -> dg.AssetCheckResult:
    found = f"{summary.accounts} accounts in {summary.pages} pages, the last without next_page_token" + (
        f"; {summary.repeated} accounts came back on two pages (kept once)" if summary.repeated else ""
    )
    return dg.AssetCheckResult(
        check_name=LISTING_CHECK,
        asset_key="external_accounts",
        passed=summary.repeated == 0,
        metadata={"pages": summary.pages, "repeated_accounts": summary.repeated},
        description=found + ".",
    )


def build_external_accounts(daily: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="external_accounts",
        backfill_policy=SINGLE_RUN,
        group_name=GROUP,
        kinds={"parquet"},
        check_specs=[CHECK_SPEC],
        description="Every external account, as listed now (list_external_accounts to the last page). "
        "Each snapshot is filed in the lake under the UTC date it was taken; the views show them all.",
    )
    def external_accounts(
        context: dg.AssetExecutionContext, synctera: SyncteraApi, lake: LakeResource, ingest: IngestResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        from pipelines.ingest.listing import take_listing

        clock = Stopwatch()
        refuse_a_bad_run_range(context, daily)
        summary = take_listing(
            synctera.client,
            lake.lake,
            include_history=ingest.include_history,
            max_pages=ingest.max_listing_pages,
            run_id=context.run.run_id,
            emit=context.log.info,
            cancelled=cancellation(context),
        )
        return dg.MaterializeResult(
            metadata={**listing_metadata(summary), **clock.metadata()},
            check_results=[listing_check(summary)],
        )

    return external_accounts
