"""Fetching one account's transactions over a date range, window by window, provably complete.

Each window is asked for as the planner says. Every row must carry a ``transaction_id`` and a
``date`` inside its window; anything else is an error that names the account and the window, never
a row silently written elsewhere. Rows are keyed by ``(account_id, transaction_id)`` (case-sensitive),
so windows never yield a duplicate. Capped windows are recorded in the ledger and their rows
discarded, since the split windows fetch them again; a capped single day keeps its rows and is flagged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.progress import Progress
from pipelines.synctera import AsyncSyncteraClient, SyncteraError, last_call_attempts
from pipelines.synctera.rows import ROW_DATE, ROW_ID, Transaction, TransactionBatch
from pipelines.windows import Outcome, Window, WindowPlanner

log = logging.getLogger("pipelines.transactions")


class TransactionAnomaly(SyncteraError):
    """The API answered with rows that cannot be trusted (no id, no date, outside the window)."""

    def __init__(self, account_id: str, window: Window, problem: str) -> None:
        self.account_id = account_id
        self.window = window
        super().__init__(f"account {account_id}, window {window}: {problem}")


class WindowFetchError(SyncteraError):
    """A window could not be fetched (retries exhausted, bad response); names account and window."""

    def __init__(self, account_id: str, window: Window, cause: SyncteraError) -> None:
        self.account_id = account_id
        self.window = window
        super().__init__(f"account {account_id}, window {window}: {cause}")


@dataclass(frozen=True)
class WindowRecord:
    """One window asked for: a row of the ``transaction_windows`` ledger."""

    account_id: str
    window: Window
    row_count: int
    outcome: Outcome
    attempts: int
    fetched_at: dt.datetime


RowSink = Callable[[str, WindowRecord, list[Transaction]], None]
"""Receives each kept window's rows (account id, window, rows) as soon as they are checked."""


@dataclass
class AccountTransactions:
    """What fetching one account over one range did: the windows, the ids kept, the flagged days.

    The rows themselves go to the sink window by window, so a heavy account's history never has to
    sit in memory; only its ids do, while it is being fetched.
    """

    account_id: str
    rows: int = 0
    windows: list[WindowRecord] = field(default_factory=list)
    flagged_days: list[dt.date] = field(default_factory=list)
    duplicates_dropped: int = 0

    @property
    def windows_split(self) -> int:
        return sum(1 for w in self.windows if w.outcome is Outcome.CAPPED)


def _checked_rows(account_id: str, window: Window, rows: Sequence[Transaction]) -> Counter[dt.date]:
    """Rows per day, after checking that each row has an id and a date inside the window.

    Counted and checked in C (``map`` over the rows, then the window's few days): no Python loop
    per row. Only a window with a problem is walked row by row, to name its first bad row.
    """
    per_day: Counter[dt.date] = Counter(map(ROW_DATE, rows))
    if (
        not all(map(ROW_ID, rows))
        or None in per_day
        or (per_day and not (window.start <= min(per_day) and max(per_day) < window.end))
    ):
        raise _first_bad_row(account_id, window, rows)
    return per_day


def _first_bad_row(account_id: str, window: Window, rows: Sequence[Transaction]) -> TransactionAnomaly:
    """The anomaly of the first row without an id, without a date or dated outside ``window``."""
    start, end = window.start, window.end
    for position, row in enumerate(rows):
        key, day = row.transaction_id, row.date
        if not key:
            return TransactionAnomaly(account_id, window, f"row {position} has no transaction_id")
        if day is None:
            return TransactionAnomaly(account_id, window, f"transaction {key} has no date")
        if not start <= day < end:
            return TransactionAnomaly(
                account_id, window, f"transaction {key} is dated {day}, outside the window"
            )
    raise AssertionError(f"account {account_id}, window {window}: no bad row")  # the caller saw one


class SeenIds:
    """The ids of one account's earlier windows, as a sorted array of 64-bit hashes.

    A heavy account's year is tens of thousands of ids and 32 accounts are fetched at once: as
    Python strings in sets they took the M benchmark's peak from 458 to 535 MiB; as hashes they
    are 8 bytes an id. Two different ids with one hash (odds about 1e-10 for an account's year)
    would stop the run with an anomaly naming the id, never drop a row.
    """

    def __init__(self) -> None:
        self._hashes = np.empty(0, dtype=np.int64)

    def add_new(self, ids: Sequence[str]) -> str | None:
        """Add ``ids`` (distinct); if one was seen before, add nothing and return it."""
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        order = np.argsort(hashes)
        hashes = hashes[order]  # sorted, so that the merge below keeps the array sorted
        at = np.searchsorted(self._hashes, hashes)
        if len(self._hashes):
            hits = self._hashes[np.minimum(at, len(self._hashes) - 1)] == hashes
            if hits.any():
                return ids[int(order[np.argmax(hits)])]
        # A merge into the sorted array: linear, where a re-sort per window would not be.
        self._hashes = np.insert(self._hashes, at, hashes)
        return None


def _unique(
    result: AccountTransactions, seen: SeenIds, window: Window, batch: TransactionBatch
) -> list[Transaction]:
    """The window's rows, each id once: an identical repeat is dropped and counted; the same id with
    other contents, or again in another window (so on another date), is an anomaly. ``seen`` holds
    the ids of the account's earlier windows."""
    rows = batch.transactions
    ids: list[str] = list(map(ROW_ID, rows))  # each checked above: a non-empty string
    if len(set(ids)) == len(ids):  # the usual answer: every id once
        kept_rows = list(rows)
    else:
        kept: dict[str, int] = {}  # id -> position of its first row
        for position, key in enumerate(ids):
            first = kept.setdefault(key, position)
            if first == position:
                continue
            if not batch.same_contents(first, position):
                raise TransactionAnomaly(
                    result.account_id, window, f"transaction {key} came back twice with different contents"
                )
            result.duplicates_dropped += 1
        ids, kept_rows = list(kept), [rows[position] for position in kept.values()]
    again = seen.add_new(ids)
    if again is not None:
        raise TransactionAnomaly(result.account_id, window, f"transaction {again} came back in two windows")
    result.rows += len(ids)
    return kept_rows


async def fetch_account_transactions(
    client: AsyncSyncteraClient,
    account_id: str,
    start: dt.date,
    end: dt.date,
    *,
    sink: RowSink,
    prior_rate: float | None = None,
    prior_days: Mapping[dt.date, int] | None = None,
    progress: Progress | None = None,
) -> AccountTransactions:
    """All transactions of ``account_id`` dated in ``[start, end)``, given to ``sink`` window by
    window, with the windows that proved them complete. ``prior_rate`` and ``prior_days`` (rows of
    days an earlier run fetched alone) size the windows; only this run's answers prove anything."""
    planner = WindowPlanner(start, end, rate=prior_rate, known=prior_days or {})
    result = AccountTransactions(account_id)
    seen = SeenIds()  # this account's ids so far: an id in two windows is an anomaly
    while (window := planner.next_window()) is not None:
        try:
            answer = await client.get_external_account_transaction_batch(
                account_id, start_date=window.start, end_date=window.end
            )
        except SyncteraError as exc:
            raise WindowFetchError(account_id, window, exc) from exc
        attempts = last_call_attempts()
        rows = answer.transactions
        if progress is not None:
            progress.advance(calls=1)
        outcome = planner.record(window, _checked_rows(account_id, window, rows))
        record = WindowRecord(account_id, window, len(rows), outcome, attempts, dt.datetime.now(dt.UTC))
        result.windows.append(record)
        if outcome is Outcome.CAPPED:
            # DEBUG: the ledger records every split; one event per split would flood the run's log.
            log.debug("account %s: window %s hit the cap (%d rows), splitting", account_id, window, len(rows))
            continue
        if outcome is Outcome.FLAGGED:
            # DEBUG too: the asset reports all flagged days in one warning and in its check.
            log.debug(
                "account %s: %s returned %d rows, the cap: kept, but the day cannot be proven complete",
                account_id,
                window.start,
                len(rows),
            )
            result.flagged_days.append(window.start)
        kept = _unique(result, seen, window, answer)
        if progress is not None:
            progress.advance(rows=len(kept))
        sink(account_id, record, kept)
    return result


async def fetch_all_accounts(
    client: AsyncSyncteraClient,
    account_ids: Sequence[str],
    start: dt.date,
    end: dt.date,
    *,
    prior_rates: Mapping[str, float],
    prior_days: Mapping[str, Mapping[dt.date, int]] | None = None,
    concurrency: int,
    sink: RowSink,
    progress: Progress | None = None,
) -> list[AccountTransactions]:
    """Every account's transactions, ``concurrency`` accounts at a time; a failure cancels the rest.

    The busiest accounts by the ledger's density start first (those without one are assumed busy:
    their first whole-range window is often capped), so that the run does not end waiting on one
    heavy account's windows, which follow one another. The windows asked for are the same.
    """
    slots = asyncio.Semaphore(concurrency)  # the semaphore's waiters are served in arrival order

    async def one(account_id: str) -> AccountTransactions:
        async with slots:
            fetched = await fetch_account_transactions(
                client,
                account_id,
                start,
                end,
                sink=sink,
                prior_rate=prior_rates.get(account_id),
                prior_days=(prior_days or {}).get(account_id),
                progress=progress,
            )
        if progress is not None:
            progress.advance(done=1)
        return fetched

    busiest_first = sorted(range(len(account_ids)), key=lambda i: -prior_rates.get(account_ids[i], math.inf))
    try:
        async with asyncio.TaskGroup() as group:
            tasks = {i: group.create_task(one(account_ids[i])) for i in busiest_first}
    except ExceptionGroup as failures:
        # The first failure names its account and window; the rest were cancelled because of it.
        raise failures.exceptions[0] from None
    return [tasks[i].result() for i in range(len(account_ids))]
