"""Live balances: ``get_external_account_balance`` with ``max_age`` for every account, observed now.

A balance is a point-in-time observation, filed under the UTC date it was observed on. One
account's failure (stale, vendor timeout, 404) becomes a row with ``error`` set; it never fails the
run or loses the other accounts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from pipelines import records
from pipelines.ingest import Cancelled, ClientFactory, Emit, run_cancellable
from pipelines.lake import Lake, split_by_date
from pipelines.progress import INTERVAL_SECONDS, Progress
from pipelines.records import BalanceObservation
from pipelines.synctera import AsyncSyncteraClient, StatsSnapshot, SyncteraError
from pipelines.warehouse import publishing

TABLE = "balances"


@dataclass(frozen=True)
class BalancesSummary:
    observations: int
    errors: tuple[tuple[str, str], ...]  # (account id, why)
    observed_dates: tuple[dt.date, ...]
    stats: StatsSnapshot
    table: pa.Table

    @property
    def error_rate(self) -> float:
        return len(self.errors) / self.observations if self.observations else 0.0


Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _observe(
    client: AsyncSyncteraClient, account_id: str, max_age: int, clock: Clock
) -> BalanceObservation:
    try:
        balance = await client.get_external_account_balance(account_id, max_age=max_age)
    except SyncteraError as exc:
        return BalanceObservation.failed(account_id, clock(), max_age, exc)
    return BalanceObservation(account_id, clock(), max_age, balance)


def observe_balances(
    client: ClientFactory,
    lake: Lake,
    account_ids: list[str],
    *,
    max_age: int,
    run_id: str,
    emit: Emit,
    clock: Clock = utc_now,
    progress_seconds: float = INTERVAL_SECONDS,
    cancelled: Cancelled | None = None,
) -> BalancesSummary:
    """Observe every account's balance concurrently (the client bounds requests in flight);
    ``clock`` says when each answer came (tests replay earlier days with it)."""
    progress = Progress("balances", len(account_ids))

    async def one(api: AsyncSyncteraClient, account_id: str) -> BalanceObservation:
        observation = await _observe(api, account_id, max_age, clock)
        progress.advance(done=1, calls=1)
        return observation

    async def fetch() -> tuple[list[BalanceObservation], StatsSnapshot]:
        async with client() as api, progress.reporting(emit, progress_seconds):
            observations = await asyncio.gather(*(one(api, a) for a in account_ids))
            return list(observations), api.stats_snapshot()

    observations, stats = run_cancellable(fetch(), cancelled, what="balances")
    table = records.balances_table(observations, run_id=run_id)
    with publishing(lake, TABLE):
        # Per day, only the accounts observed that day are replaced: a run that crosses midnight
        # UTC never erases the earlier observations of the day it started on.
        for day, rows in split_by_date(table):
            observed = [o.account_id for o in observations if o.observed_at.date() == day]
            lake.replace_accounts(TABLE, [day], rows, accounts=observed)
    errors = tuple((o.account_id, o.error) for o in observations if o.error is not None)
    emit(f"balances: {len(observations) - len(errors)} observed, {len(errors)} errors")
    days = tuple(sorted({o.observed_at.date() for o in observations}))
    return BalancesSummary(len(observations), errors, days, stats, table)
