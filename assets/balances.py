"""``balances``: each account's live balance, observed now, with ``max_age``.

Not partitioned: there is no way to ask Synctera for a past balance, so every materialization is an
observation of now, filed in the lake under the UTC date observed (the history stays queryable).
"""

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

ERROR_RATE_CHECK = "balance_error_rate"
CHECK_SPEC = dg.AssetCheckSpec(
    ERROR_RATE_CHECK,
    asset="balances",
    description="The share of accounts whose balance could not be observed (stale beyond max_age, vendor "
    "timeout, not found) stays under SYNCTERA_BALANCE_ERROR_THRESHOLD.",
)


def build_balances(
    daily: dg.PartitionsDefinition, external_accounts: dg.AssetsDefinition, transactions: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        name="balances",
        backfill_policy=SINGLE_RUN,
        # After the transactions, so that a backfill's runs (one per kind of partitioning) give the
        # reconciliation check both.
        deps=[external_accounts, transactions],
        group_name=GROUP,
        kinds={"parquet"},
        check_specs=[CHECK_SPEC],
        description="Live balances of every account of the latest external_accounts snapshot "
        "(get_external_account_balance with max_age), observed now and filed under the UTC date observed. "
        "An account whose balance is unavailable is a row with error set, never a failed run.",
    )
    def balances(
        context: dg.AssetExecutionContext, synctera: SyncteraApi, lake: LakeResource, ingest: IngestResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        from pipelines.ingest.balances import observe_balances
        from pipelines.ingest.listing import latest_accounts

        clock = Stopwatch()
        refuse_a_bad_run_range(context, daily)
        account_ids, snapshot_day = latest_accounts(lake.lake)
        summary = observe_balances(
            synctera.client,
            lake.lake,
            account_ids,
            max_age=ingest.max_age,
            run_id=context.run.run_id,
            emit=context.log.info,
            progress_seconds=ingest.progress_seconds,
            cancelled=cancellation(context),
        )
        for account_id, why in summary.errors[:20]:
            context.log.warning(f"balance of {account_id} unavailable: {why}")
        if len(summary.errors) > 20:
            context.log.warning(f"… and {len(summary.errors) - 20} more balances unavailable (error rows)")
        rate = round(summary.error_rate, 4)
        threshold = ingest.balance_error_threshold
        return dg.MaterializeResult(
            metadata={
                "balances_observed": summary.observations,
                "errors": len(summary.errors),
                "error_rate": rate,
                "observed_dates": ", ".join(d.isoformat() for d in summary.observed_dates),
                "snapshot_day": snapshot_day.isoformat(),
                **clock.metadata(),
                "preview": markdown_preview(
                    summary.table, ["account_id", "current", "available", "currency", "error_code"]
                ),
                **api_metadata(summary.stats),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=ERROR_RATE_CHECK,
                    passed=summary.error_rate <= threshold,
                    metadata={"error_rate": rate, "threshold": threshold},
                    description=f"{len(summary.errors)} of {summary.observations} balances unavailable "
                    f"({rate:.1%}; threshold {threshold:.0%}).",
                )
            ],
        )

    return balances


RECONCILE_CHECK = "balances_reconcile_with_transactions"


def build_reconciliation_check(
    balances: dg.AssetsDefinition, transactions: dg.AssetsDefinition
) -> dg.AssetChecksDefinition:
    """Runs after the balances and the transactions of a run (the daily run takes both)."""

    @dg.asset_check(
        asset=balances,
        name=RECONCILE_CHECK,
        additional_deps=[transactions],
        description="Between two error-free balance observations of an account, current moves by exactly "
        "its posted transactions dated in between (per currency; money out lowers a deposit account and "
        "raises a credit card's). Pairs whose days are not settled yet (within the lookback, pending, or "
        "not fetched) wait; pairs spanning a capped day cannot be judged.",
    )
    def reconciliation(lake: LakeResource, ingest: IngestResource) -> dg.AssetCheckResult:
        from pipelines.reconcile import reconcile

        result = reconcile(lake.lake, lookback_days=ingest.lookback_days)
        return dg.AssetCheckResult(
            passed=not result.mismatches,
            # A warning until the rule is confirmed against Synctera's own balances (see README).
            severity=dg.AssetCheckSeverity.WARN,
            description=result.sentence(),
            metadata={
                "pairs": result.pairs,
                "reconciled": result.reconciled,
                "mismatches": len(result.mismatches),
                "waiting_to_settle": result.waiting,
                "spanning_capped_days": result.unprovable,
                "accounts_not_reconciling": dg.MetadataValue.json(
                    [
                        {
                            "account_id": m.account_id,
                            "currency": m.currency,
                            "from": m.first_observed.isoformat(),
                            "to": m.second_observed.isoformat(),
                            "balance_change": m.balance_change,
                            "posted_transactions_change": m.expected_change,
                            "difference": m.difference,
                            "reason": m.reason,
                        }
                        for m in result.mismatches
                    ]
                ),
            },
        )

    return reconciliation
