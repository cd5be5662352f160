"""Fetching one account's windows: rows that cannot be trusted are errors naming account and window.

The server here is a transport-level fake, because these answers break the spec on purpose."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable

import httpx
import pytest

from pipelines.synctera import AsyncSyncteraClient
from pipelines.synctera.rows import Transaction
from pipelines.transactions import (
    AccountTransactions,
    SeenIds,
    TransactionAnomaly,
    WindowFetchError,
    fetch_account_transactions,
    fetch_all_accounts,
)
from pipelines.windows import Outcome

from .conftest import FAST_RETRY

START, END = dt.date(2026, 2, 1), dt.date(2026, 2, 8)


def _fetch(
    rows_for: Callable[[dt.date, dt.date], list[dict[str, object]]], status: int = 200
) -> tuple[AccountTransactions, list[Transaction]]:
    """Fetch one account from a fake server; returns the result and every row the sink received."""

    def handler(request: httpx.Request) -> httpx.Response:
        start = dt.date.fromisoformat(request.url.params["start_date"])
        end = dt.date.fromisoformat(request.url.params["end_date"])
        return httpx.Response(status, json={"transactions": rows_for(start, end)})

    received: list[Transaction] = []

    async def run() -> AccountTransactions:
        async with AsyncSyncteraClient(
            base_url="https://api.example.test/v0",
            api_key="k",
            retry=FAST_RETRY,
            transport=httpx.MockTransport(handler),
        ) as client:
            return await fetch_account_transactions(
                client, "acc-1", START, END, sink=lambda account, window, rows: received.extend(rows)
            )

    return asyncio.run(run()), received


def test_a_row_dated_outside_its_window_is_an_error_not_a_misfiled_row() -> None:
    with pytest.raises(TransactionAnomaly) as caught:
        _fetch(
            lambda s, e: [
                {"transaction_id": "x", "date": (e + dt.timedelta(days=3)).isoformat(), "amount": 1}
            ]
        )
    assert caught.value.account_id == "acc-1"
    assert "2026-02-01..2026-02-07" in str(caught.value)
    assert "outside the window" in str(caught.value)


@pytest.mark.parametrize(
    ("row", "problem"), [({"date": "2026-02-02"}, "no transaction_id"), ({"transaction_id": "a"}, "no date")]
)
def test_rows_without_key_or_date_are_errors(row: dict[str, object], problem: str) -> None:
    with pytest.raises(TransactionAnomaly, match=problem):
        _fetch(lambda s, e: [row])


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"transaction_id": "", "date": "2026-02-03"}, "row 2 has no transaction_id"),
        ({"transaction_id": "c", "date": "2026-01-31"}, "transaction c is dated 2026-01-31, outside"),
        ({"transaction_id": "c", "date": "2026-02-08"}, "transaction c is dated 2026-02-08, outside"),
    ],
)
def test_the_error_names_the_first_bad_row_among_good_ones(bad: dict[str, object], problem: str) -> None:
    good = [{"transaction_id": "a", "date": "2026-02-07"}, {"transaction_id": "b", "date": "2026-02-01"}]
    later = {"transaction_id": "d"}  # no date: also bad, but after the first
    with pytest.raises(TransactionAnomaly, match=problem):
        _fetch(lambda s, e: [*good, bad, later])


def test_the_same_id_with_different_contents_is_an_error_and_identical_repeats_are_dropped() -> None:
    twice = [{"transaction_id": "a", "date": "2026-02-02", "amount": 5}] * 2
    result, rows = _fetch(lambda s, e: twice)
    assert [r.transaction_id for r in rows] == ["a"]
    assert result.duplicates_dropped == 1
    clash = [twice[0], {**twice[0], "amount": 6}]
    with pytest.raises(TransactionAnomaly, match="twice with different contents"):
        _fetch(lambda s, e: clash)


def test_ids_differing_only_by_case_are_two_transactions() -> None:
    rows = [{"transaction_id": "AbC", "date": "2026-02-02"}, {"transaction_id": "aBc", "date": "2026-02-02"}]
    _, received = _fetch(lambda s, e: rows)
    assert sorted(r.transaction_id or "" for r in received) == ["AbC", "aBc"]


def test_a_failing_window_names_account_and_window() -> None:
    with pytest.raises(WindowFetchError) as caught:
        _fetch(lambda s, e: [], status=503)
    assert "acc-1" in str(caught.value) and "2026-02-01..2026-02-07" in str(caught.value)


def test_capped_windows_are_split_and_their_rows_not_kept() -> None:
    def rows_for(start: dt.date, end: dt.date) -> list[dict[str, object]]:
        days = [start + dt.timedelta(days=n) for n in range((end - start).days)]
        every = [{"transaction_id": f"{d}-{i}", "date": d.isoformat()} for d in days for i in range(120)]
        return every[:500]

    result, received = _fetch(rows_for)
    assert len(received) == len({r.transaction_id for r in received}) == 7 * 120
    assert result.windows_split >= 1
    assert sum(w.row_count for w in result.windows if w.outcome is Outcome.COMPLETE) == 7 * 120


def test_the_same_id_in_two_windows_is_an_anomaly() -> None:
    def rows_for(start: dt.date, end: dt.date) -> list[dict[str, object]]:
        days = [start + dt.timedelta(days=n) for n in range((end - start).days)]
        every = [{"transaction_id": f"{d}-{i}", "date": d.isoformat()} for d in days for i in range(100)]
        return [{"transaction_id": "same", "date": start.isoformat()}, *every][:500]

    with pytest.raises(TransactionAnomaly, match="came back in two windows"):
        _fetch(rows_for)


def test_seen_ids_find_every_repeat_and_nothing_else() -> None:
    rng = random.Random(5)
    seen, earlier = SeenIds(), []
    for window in range(60):
        ids = [f"{window}-{n}-{rng.random()}" for n in range(rng.randrange(1, 400))]
        assert seen.add_new(ids) is None  # new ids are never taken for repeats
        earlier += ids
    for repeat in rng.sample(earlier, 100):
        assert seen.add_new([f"new-{repeat}", repeat, f"other-{repeat}"]) == repeat


def test_the_busiest_accounts_start_first_and_results_keep_the_callers_order() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path.split("/")[-2])
        return httpx.Response(200, json={"transactions": []})

    async def run() -> list[str]:
        async with AsyncSyncteraClient(
            base_url="https://api.example.test/v0",
            api_key="k",
            transport=httpx.MockTransport(handler),
        ) as client:
            results = await fetch_all_accounts(
                client,
                ["quiet", "unknown", "busy", "middling"],
                START,
                END,
                prior_rates={"quiet": 0.5, "busy": 40.0, "middling": 3.0},
                concurrency=1,
                sink=lambda account, window, rows: None,
            )
            return [r.account_id for r in results]

    assert asyncio.run(run()) == ["quiet", "unknown", "busy", "middling"]
    assert asked == ["unknown", "busy", "middling", "quiet"], "no density known: assumed busy"
