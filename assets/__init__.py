"""Dagster assets: thin glue over ``pipelines`` (client → window planner → lake writer → DuckDB views)."""

import warnings

import dagster as dg

from assets.balances import build_balances, build_reconciliation_check
from assets.external_accounts import build_external_accounts
from assets.report import build_report
from assets.transactions import build_transactions


def build_assets(daily: dg.TimeWindowPartitionsDefinition, *, shards: int = 1) -> list[dg.AssetsDefinition]:
    """The code location's assets: the listing and the balances are observations of now
    (unpartitioned); transactions are partitioned by their UTC date, fetched in ``shards`` steps."""
    with warnings.catch_warnings():
        # BackfillPolicy is beta in Dagster 1.13 and the CLI's --partition-range needs it. Its warning,
        # once per asset in every process that loads the code (CLI, code server, daemon, run), gives
        # an operator nothing to act on; tests/test_definitions_lean.py pins that loading is quiet.
        warnings.filterwarnings("ignore", message=".*backfill_policy", category=dg.BetaWarning)
        external_accounts = build_external_accounts(daily)
        transactions = build_transactions(daily, external_accounts, shards=shards)
        balances = build_balances(daily, external_accounts, transactions)
        report = build_report(transactions, balances)
    return [
        external_accounts,
        transactions,
        balances,
        build_reconciliation_check(balances, transactions),
        report,
    ]
