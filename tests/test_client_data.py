"""Balances and transactions, sync and async, compared with the sandbox's ground truth."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import pytest

from pipelines.synctera import (
    TRANSACTIONS_CAP,
    AsyncSyncteraClient,
    BadRequestError,
    ServerError,
    SyncteraClient,
    UnprocessableEntityError,
)

from .conftest import TODAY

ONE_DAY = dt.timedelta(days=1)


def _planted(sandbox, index: int, days_ago: int) -> tuple[str, dt.date]:
    return sandbox.world.accounts[index]["id"], TODAY - dt.timedelta(days=days_ago)


def test_window_returns_exactly_the_true_transactions(client: SyncteraClient, sandbox) -> None:
    account_id = sandbox.world.accounts[5]["id"]
    start, end = TODAY - dt.timedelta(days=30), TODAY - dt.timedelta(days=20)
    got = client.get_external_account_transactions(account_id, start_date=start, end_date=end).transactions
    truth = [t for d in range(10) for t in sandbox.true_transactions(account_id, start + d * ONE_DAY)]
    assert len(got) < TRANSACTIONS_CAP
    assert sorted(t.transaction_id for t in got) == sorted(t["transaction_id"] for t in truth)
    assert all(start <= t.date < end for t in got if t.date)
    assert all(isinstance(t.amount, int) for t in got)


def test_a_day_of_499_comes_back_whole(client: SyncteraClient, sandbox) -> None:
    account_id, day = _planted(sandbox, 1, 3)
    got = client.get_external_account_transactions(account_id, start_date=day, end_date=day + ONE_DAY)
    assert len(got.transactions) == 499
    assert {t.transaction_id for t in got.transactions} == {
        t["transaction_id"] for t in sandbox.true_transactions(account_id, day)
    }


@pytest.mark.parametrize(("index", "days_ago", "true_count"), [(2, 10, 500), (3, 17, 750)])
def test_the_cap_returns_500_of_the_true_rows(
    client: SyncteraClient, sandbox, index: int, days_ago: int, true_count: int
) -> None:
    account_id, day = _planted(sandbox, index, days_ago)
    truth = {t["transaction_id"] for t in sandbox.true_transactions(account_id, day)}
    got = client.get_external_account_transactions(account_id, start_date=day, end_date=day + ONE_DAY)
    ids = [t.transaction_id for t in got.transactions]
    assert len(truth) == true_count
    assert len(ids) == TRANSACTIONS_CAP == len(set(ids))
    assert set(ids) <= truth


def test_transaction_ids_are_case_sensitive(sandbox) -> None:
    pairs = 0
    for account in sandbox.world.accounts:
        for days_ago in range(1, 120):
            ids = {
                t["transaction_id"]
                for t in sandbox.true_transactions(account["id"], TODAY - days_ago * ONE_DAY)
            }
            pairs += sum(1 for i in ids if i.swapcase() in ids and i != i.swapcase())
    assert pairs > 0, "the sandbox plants ids that differ only by case"


def test_order_is_not_promised(client: SyncteraClient, sandbox) -> None:
    account_id, day = _planted(sandbox, 1, 3)
    calls = [
        [t.transaction_id for t in client.get_external_account_transactions(
            account_id, start_date=day, end_date=day + ONE_DAY).transactions]
        for _ in range(2)
    ]  # fmt: skip
    assert sorted(calls[0]) == sorted(calls[1])
    assert calls[0] != calls[1]


def test_date_arguments_are_checked_before_any_call(client: SyncteraClient, sandbox) -> None:
    with pytest.raises(ValueError, match="end is exclusive"):
        client.get_external_account_transactions("a", start_date=TODAY, end_date=TODAY)
    with pytest.raises(TypeError):
        client.get_external_account_transactions("a", start_date="2026-01-01", end_date=TODAY)  # type: ignore[arg-type]
    assert sandbox.records() == []


def test_balances_are_int_minor_units_with_aware_timestamps(client: SyncteraClient, sandbox) -> None:
    profile = next(
        p for p in sandbox.world.profiles.values() if not p.vendor_times_out and p.balance_age_seconds < 600
    )
    balance = client.get_external_account_balance(profile.id, max_age=600)
    assert isinstance(balance.current, int)
    assert balance.last_updated_time_vendor is not None
    assert balance.last_updated_time_vendor.tzinfo is not None
    assert sandbox.records("balance")[0].query == {"max_age": "600"}


def test_balance_older_than_max_age_fails(client: SyncteraClient, sandbox) -> None:
    stale = next(
        p for p in sandbox.world.profiles.values() if not p.vendor_times_out and p.balance_age_seconds > 3600
    )
    with pytest.raises(UnprocessableEntityError) as caught:
        client.get_external_account_balance(stale.id, max_age=600)
    assert caught.value.code == "BALANCE_TOO_OLD"
    assert client.get_external_account_balance(stale.id, max_age=10**9).currency


def test_some_institutions_require_max_age(client: SyncteraClient, sandbox) -> None:
    strict = next(p for p in sandbox.world.profiles.values() if p.requires_max_age and not p.vendor_times_out)
    with pytest.raises(BadRequestError) as caught:
        client.get_external_account_balance(strict.id)
    assert "max_age" in (caught.value.detail or "")


def test_vendor_timeouts_fail_after_retries(client: SyncteraClient, sandbox) -> None:
    broken = next(p for p in sandbox.world.profiles.values() if p.vendor_times_out)
    with pytest.raises(ServerError) as caught:
        client.get_external_account_balance(broken.id, max_age=10**9)
    assert (caught.value.status, caught.value.code, caught.value.attempts) == (504, "VENDOR_TIMEOUT", 5)


def test_negative_max_age_is_refused_before_any_call(client: SyncteraClient, sandbox) -> None:
    with pytest.raises(ValueError, match="max_age"):
        client.get_external_account_balance("a", max_age=-1)
    assert sandbox.records() == []


def test_async_client_matches_sync_client(
    client: SyncteraClient, async_client_factory: Callable[..., AsyncSyncteraClient], sandbox
) -> None:
    account_id, day = _planted(sandbox, 1, 3)
    sandbox.faults.inject(["503", "429-body"], endpoint="transactions")

    async def run() -> tuple[list[str], list[str]]:
        async with async_client_factory() as aclient:
            ids = [a.id async for a in aclient.iter_external_accounts(limit=9)]
            rows = await aclient.get_external_account_transactions(
                account_id, start_date=day, end_date=day + ONE_DAY
            )
            assert aclient.stats_snapshot().retries == {"getExternalAccountTransactions": 2}
            return ids, [t.transaction_id or "" for t in rows.transactions]

    ids, txn_ids = asyncio.run(run())
    assert sorted(ids) == sorted(a.id for a in client.iter_external_accounts())
    assert len(txn_ids) == 499


def test_async_concurrency_limit_bounds_requests_in_flight(
    start_sandbox: Callable[..., object], api_key: str
) -> None:
    server = start_sandbox(latency={"get": 0.05})
    sandbox = server.sandbox  # type: ignore[attr-defined]
    ids = [a["id"] for a in sandbox.accounts()[:12]]

    async def run() -> None:
        async with AsyncSyncteraClient(
            base_url=server.base_url,
            api_key=api_key,
            max_concurrency=3,  # type: ignore[attr-defined]
        ) as aclient:
            await asyncio.gather(*(aclient.get_external_account(i) for i in ids))

    asyncio.run(run())
    assert sandbox.max_in_flight == 3
