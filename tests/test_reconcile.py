"""Balances against transactions, over real HTTP: the sandbox's balances move by exactly its posted
transactions, except for the account it is told to drift, which the reconciliation names."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from pipelines.ingest.listing import latest_accounts, take_listing
from pipelines.lake import Lake
from pipelines.reconcile import OWED_TYPES, reconcile
from pipelines.sandbox import RunningSandbox
from pipelines.sandbox.world import DRIFT_CENTS

from .conftest import client_of, ingest_on, observe_balances_on, utc_today

ONE_DAY = dt.timedelta(days=1)


def _quiet(_: str) -> None:
    pass


def _listed(server: RunningSandbox, tmp_path: Path) -> tuple[Lake, list[str]]:
    lake = Lake(tmp_path / "data")
    take_listing(client_of(server), lake, include_history=False, run_id="listing", emit=_quiet)
    return lake, latest_accounts(lake)[0]


def test_balances_reconcile_with_the_transactions_between_them_and_a_drift_is_named(
    start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    today = utc_today()
    t0 = today - 12 * ONE_DAY
    probe = start_sandbox(today=t0).sandbox.world.profiles.values()
    drifting = next(p for p in probe if p.index >= 7 and not p.vendor_times_out and not p.requires_max_age)
    server = start_sandbox(today=t0, drift_account=drifting.index)
    sandbox = server.sandbox
    lake, account_ids = _listed(server, tmp_path)
    observe_balances_on(server, lake, account_ids, [t0 + ONE_DAY, t0 + 3 * ONE_DAY, t0 + 4 * ONE_DAY])
    sandbox.today = today  # by now every transaction of those days has posted and is visible
    ingest_on(server, lake, t0 - 2 * ONE_DAY, t0 + 8 * ONE_DAY)

    result = reconcile(lake, lookback_days=3)
    healthy = [a for a in account_ids if not sandbox.world.profiles[a].vendor_times_out]
    assert result.pairs == 2 * len(healthy), "two consecutive pairs per account observed without error"
    assert result.waiting == 0, "fetched eight days after the last observation: every day settled"
    assert result.reconciled + len(result.mismatches) + result.unprovable == result.pairs
    assert {m.account_id for m in result.mismatches} == {drifting.id}
    assert sorted(m.difference for m in result.mismatches) == [DRIFT_CENTS, 2 * DRIFT_CENTS]
    assert {m.reason for m in result.mismatches} == {
        "the balance moved by other than its posted transactions"
    }
    assert drifting.id in result.sentence() and "do not reconcile" in result.sentence()
    # Both sign conventions were exercised by accounts whose transactions moved their balance.
    moved = {
        sandbox.world.profiles[a].type in OWED_TYPES
        for a in healthy
        if any(sandbox.world.day_net(a, d) for d in (t0 + n * ONE_DAY for n in range(1, 4)))
    }
    assert moved == {True, False}


def test_changes_whose_days_have_not_settled_wait_instead_of_failing(
    start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    today = utc_today()
    server = start_sandbox(today=today - ONE_DAY, accounts=12)
    lake, account_ids = _listed(server, tmp_path)
    observe_balances_on(server, lake, account_ids, [today - ONE_DAY, today])
    ingest_on(server, lake, today - 5 * ONE_DAY, today)
    result = reconcile(lake, lookback_days=3)
    assert result.pairs > 0
    assert (result.waiting, result.judged) == (result.pairs - result.unprovable, 0)
    assert "wait for their days to settle" in result.sentence()
