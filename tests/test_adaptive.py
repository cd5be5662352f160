"""The adaptive concurrency limit: its arithmetic, its gate, and a fetch against a limited sandbox."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import pytest

from pipelines.sandbox import RunningSandbox, Sandbox, SandboxConfig
from pipelines.sandbox.process import sandbox_process
from pipelines.synctera import TRANSACTIONS_CAP, AsyncSyncteraClient, StatsSnapshot
from pipelines.synctera.adaptive import AdaptiveLimit, AsyncGate, FixedLimit
from pipelines.synctera.rows import Transaction
from pipelines.transactions import WindowRecord, fetch_all_accounts

Rows = dict[tuple[str, dt.date], dict[str, int | None]]

OP = "getExternalAccountTransactions"


def answers(limit: AdaptiveLimit, count: int, *, status: int = 200, seconds: float = 0.05) -> None:
    """``count`` answers to requests sent at the current limit (all of it in use)."""
    for _ in range(count):
        limit.observe(limit.episode, OP, status, seconds, limit.allowed)


def test_slow_start_grows_by_half_every_round_trip_up_to_the_ceiling() -> None:
    limit = AdaptiveLimit(32)
    assert limit.allowed == 8, "a quarter of the ceiling to begin with"
    answers(limit, 8)
    assert limit.allowed == 12
    answers(limit, 100)
    assert limit.limit == 32.0 and limit.allowed == 32


def test_answers_to_a_limit_not_in_use_do_not_grow_it() -> None:
    limit = AdaptiveLimit(32)
    for _ in range(50):  # a listing: one page at a time
        limit.observe(limit.episode, OP, 200, 0.01, 1)
    assert limit.allowed == 8, "one request at a time proves nothing about nine"
    limit.observe(limit.episode, OP, 200, 0.01, 4)  # half the limit in use: it is being tested
    assert limit.limit == 8.5


def test_a_429_shrinks_the_limit_once_per_episode() -> None:
    limit = AdaptiveLimit(32, initial=20)
    sent_before = limit.episode
    for _ in range(10):  # ten requests of one round trip all answered 429
        limit.observe(sent_before, OP, 429, 0.001, limit.allowed)
    assert limit.limit == pytest.approx(20 * 0.7)
    assert limit.throttled == 10, "every 429 is counted, though only the first shrinks the limit"
    limit.observe(limit.episode, OP, 503, 0.001, limit.allowed)  # sent after the decrease: a new episode
    assert limit.limit == pytest.approx(20 * 0.7 * 0.7)


def test_after_congestion_it_grows_by_one_per_round_trip() -> None:
    limit = AdaptiveLimit(64, initial=30)
    limit.observe(limit.episode, OP, 429, 0.001, limit.allowed)  # failed at 30: down to 21
    before = limit.limit
    answers(limit, 21)  # about one round trip of answers at 21 in flight
    assert limit.limit == pytest.approx(before + 1, abs=0.05)


def test_near_the_level_that_failed_it_probes_slowly_then_resumes_when_past_it() -> None:
    limit = AdaptiveLimit(64, initial=10, probe_rtts=16)
    limit.observe(limit.episode, OP, 429, 0.001, limit.allowed)  # failed at 10: down to 7
    answers(limit, 20)  # 7 → 9 (the level below the failure) at one per round trip
    assert 9.0 <= limit.limit < 9.2
    answers(limit, 9 * 8)  # eight round trips near 10: not yet one more
    assert limit.allowed == 9
    answers(limit, 9 * 16)  # sixteen round trips: tries 10 again
    assert limit.allowed == 10
    answers(limit, 10 * 40)  # no 429 past 11: the API's limit rose, normal growth again
    assert limit.allowed > 14


def test_the_limit_stays_within_one_and_the_ceiling() -> None:
    limit = AdaptiveLimit(4, initial=3)
    for _ in range(50):
        limit.observe(limit.episode, OP, 429, 0.001, limit.allowed)
    assert limit.limit == 1.0 and limit.allowed == 1
    answers(limit, 1000)
    assert limit.limit == 4.0
    with pytest.raises(ValueError, match="ceiling must be at least 1"):
        AdaptiveLimit(0)
    with pytest.raises(ValueError, match="backoff"):
        AdaptiveLimit(8, backoff=1.0)


def test_other_errors_and_transport_failures_are_not_congestion() -> None:
    limit = AdaptiveLimit(32, initial=10)
    for status in (500, 502, 504, 404):
        limit.observe(limit.episode, OP, status, 0.05, limit.allowed)
    limit.observe(limit.episode, OP, None, 30.0, limit.allowed)
    assert limit.episode == 0 and limit.throttled == 0 and limit.limit > 10


def test_latency_is_judged_per_operation() -> None:
    limit = AdaptiveLimit(64, initial=40)
    limit._slow_start = False  # steady state: growth is one per round trip
    for _ in range(200):  # balances are slow by nature: 0.4 s beside 0.05 s is no congestion
        limit.observe(limit.episode, OP, 200, 0.05, limit.allowed)
        limit.observe(limit.episode, "getExternalAccountBalance", 200, 0.4, limit.allowed)
    assert limit.episode == 0
    grown, sent = limit.limit, limit.episode
    for _ in range(20):  # the transactions endpoint starts queueing: 0.05 s → 0.4 s
        limit.observe(sent, OP, 200, 0.4, limit.allowed)
    assert limit.episode == 1 and limit.limit < grown * 0.75
    answers(limit, 100, seconds=0.05)  # the queue drains: the recent average comes down again
    before = limit.limit
    answers(limit, round(before), seconds=0.05)  # a round trip at the usual speed
    assert limit.limit == pytest.approx(before + 1, abs=0.1), "a slower answer sets no level to probe"


def test_a_fixed_limit_never_moves_but_counts_429s() -> None:
    fixed = FixedLimit(5)
    fixed.observe(0, OP, 429, 0.0, 1)
    fixed.observe(0, OP, 200, 0.0, 1)
    assert fixed.allowed == 5 and fixed.throttled == 1 and fixed.episode == 0


def test_the_gate_admits_no_more_than_the_limit_in_arrival_order_and_passes_on_cancelled_slots() -> None:
    async def scenario() -> None:
        gate = AsyncGate(FixedLimit(2))
        order: list[int] = []

        async def request(n: int) -> None:
            await gate.acquire()
            order.append(n)

        first = [asyncio.create_task(request(n)) for n in range(2)]
        await asyncio.gather(*first)
        waiting = [asyncio.create_task(request(n)) for n in range(2, 6)]
        await asyncio.sleep(0)  # let them queue
        assert gate.in_flight == 2 and order == [0, 1]
        waiting[0].cancel()  # a waiter that gives up takes no slot
        await asyncio.sleep(0)
        gate.release(0, OP, 200, 0.01)
        await asyncio.sleep(0)
        assert order == [0, 1, 3] and gate.in_flight == 2
        gate.release(0, OP, 200, 0.01)
        waiting[2].cancel()  # handed the slot, then cancelled before it ran: the slot moves on
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert order == [0, 1, 3, 5] and gate.in_flight == 2 and gate.peak == 2
        await asyncio.gather(*waiting, return_exceptions=True)

    asyncio.run(scenario())


def test_the_gate_lets_more_through_as_the_limit_grows() -> None:
    async def scenario() -> int:
        gate = AsyncGate(AdaptiveLimit(8, initial=1))
        admitted = 0

        async def request() -> None:
            nonlocal admitted
            episode = await gate.acquire()
            admitted += 1
            await asyncio.sleep(0)
            gate.release(episode, OP, 200, 0.01)

        await asyncio.gather(*(request() for _ in range(40)))
        return gate.peak

    assert asyncio.run(scenario()) == 8


# --- against a sandbox in its own process, over HTTP ---------------------------------------------

TODAY = dt.date(2026, 11, 20)
START, END = TODAY - dt.timedelta(days=90), TODAY
BUSY = SandboxConfig(seed=7, accounts=80, history_days=120, today=TODAY)
"""Many windows, some capped and split (the default density); costly for the sandbox's CPU."""
QUIET = SandboxConfig(seed=7, accounts=200, history_days=120, density="light", today=TODAY)
"""Small answers: the configured latency, not the sandbox's CPU, is what a round trip takes."""


def _sandbox_args(config: SandboxConfig, *extra: str) -> list[str]:
    return [
        *("--seed", str(config.seed), "--accounts", str(config.accounts), "--density", config.density),
        *("--history-days", str(config.history_days), "--today", str(config.today), *extra),
    ]


def _fetch_everything(
    config: SandboxConfig, base_url: str, api_key: str, ceiling: int
) -> tuple[Rows, StatsSnapshot]:
    """Every account's transactions over ``[START, END)`` as the pipeline fetches them."""
    got: Rows = {}

    def keep(account_id: str, window: WindowRecord, rows: list[Transaction]) -> None:
        for row in rows:
            day, key = row.date, row.transaction_id
            assert day is not None and key is not None
            got.setdefault((account_id, day), {})[key] = row.amount

    async def run() -> StatsSnapshot:
        async with AsyncSyncteraClient(base_url=base_url, api_key=api_key, max_concurrency=ceiling) as client:
            accounts = [a["id"] for a in Sandbox(config).accounts()]
            await fetch_all_accounts(
                client, accounts, START, END, prior_rates={}, concurrency=2 * ceiling, sink=keep
            )
            return client.stats_snapshot()

    return got, asyncio.run(run())


def _assert_exact(config: SandboxConfig, got: Rows) -> None:
    """The rows fetched are the sandbox's own, but on days over the cap: 500 of them there."""
    sandbox = Sandbox(config)
    truth: Rows = {}
    for account in sandbox.accounts():
        for n in range((END - START).days):
            day = START + dt.timedelta(days=n)
            if rows := sandbox.true_transactions(account["id"], day):
                truth[(account["id"], day)] = {t["transaction_id"]: t["amount"] for t in rows}
    capped = {key for key, rows in truth.items() if len(rows) >= TRANSACTIONS_CAP}
    for key in capped:
        assert len(got[key]) == TRANSACTIONS_CAP and got[key].items() <= truth[key].items()
    assert {k: v for k, v in got.items() if k not in capped} == {
        k: v for k, v in truth.items() if k not in capped
    }


def test_against_a_server_limit_the_fetch_finds_it_with_few_429s_and_exact_data(api_key: str) -> None:
    limit = 6  # below the limit's start (8): the server's limit is met for sure
    args = _sandbox_args(BUSY, "--max-in-flight", str(limit), "--latency", "transactions=0.05")
    with sandbox_process(args, api_key=api_key) as base_url:
        got, stats = _fetch_everything(BUSY, base_url, api_key, ceiling=32)
    requests = stats.requests["getExternalAccountTransactions"]
    throttled = stats.throttled.get("getExternalAccountTransactions", 0)
    assert requests > 300, "many windows"
    assert throttled >= 1, "the server's limit was reached"
    assert throttled / requests <= 0.02, f"{throttled} of {requests} requests answered 429"
    assert stats.concurrency_limit is not None and stats.concurrency_limit < limit + 2
    _assert_exact(BUSY, got)


def test_without_a_server_limit_the_limit_grows_to_the_ceiling_and_never_past_it(api_key: str) -> None:
    args = _sandbox_args(QUIET, "--latency", "transactions=0.05")
    with sandbox_process(args, api_key=api_key) as base_url:
        got, stats = _fetch_everything(QUIET, base_url, api_key, ceiling=12)
    assert stats.total_throttled == 0
    assert stats.peak_in_flight == 12 and stats.concurrency_limit == 12.0
    _assert_exact(QUIET, got)


def test_requests_per_second_still_holds_over_the_adaptive_limit(
    start_sandbox: Callable[..., RunningSandbox], api_key: str
) -> None:
    server = start_sandbox(accounts=5)

    async def run() -> None:
        async with AsyncSyncteraClient(
            base_url=server.base_url, api_key=api_key, max_concurrency=32, requests_per_second=40.0
        ) as client:
            await asyncio.gather(*(client.list_external_accounts(limit=1) for _ in range(60)))

    asyncio.run(run())
    starts = sorted(r.at for r in server.sandbox.records("list"))
    assert len(starts) == 60
    rate = (len(starts) - 1) / (starts[-1] - starts[0]).total_seconds()
    assert rate <= 40 * 1.05, f"{rate:.1f} requests/s over a budget of 40"
