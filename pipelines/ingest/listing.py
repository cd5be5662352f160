"""The accounts snapshot: ``list_external_accounts`` to the last page, filed under the day observed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa

from pipelines import records
from pipelines.ingest import Cancelled, ClientFactory, Emit, run_cancellable
from pipelines.lake import Lake
from pipelines.synctera import StatsSnapshot
from pipelines.synctera.client import MAX_PAGES
from pipelines.synctera.models import ExternalAccount
from pipelines.warehouse import publishing

TABLE = "external_accounts"


class NoSnapshotError(RuntimeError):
    """No accounts snapshot has been taken yet."""


@dataclass(frozen=True)
class ListingSummary:
    accounts: int
    pages: int
    repeated: int  # accounts the listing returned more than once (each kept once)
    observed_at: dt.datetime
    path: str  # the partition written: a local path or an s3:// URI
    stats: StatsSnapshot
    table: pa.Table


def take_listing(
    client: ClientFactory,
    lake: Lake,
    *,
    include_history: bool,
    run_id: str,
    emit: Emit,
    max_pages: int = MAX_PAGES,
    cancelled: Cancelled | None = None,
) -> ListingSummary:
    """Page the listing to the end and write it as the snapshot of the UTC day observed."""

    async def listing() -> tuple[list[ExternalAccount], int, int, StatsSnapshot]:
        seen: dict[str, ExternalAccount] = {}
        pages = repeats = 0
        async with client() as api:
            async for page in api.iter_external_account_pages(
                include_history=include_history, max_pages=max_pages
            ):
                pages += 1
                for account in page.external_accounts:
                    repeats += account.id in seen
                    seen.setdefault(account.id, account)
                if pages % 100 == 0:  # a line per 100 pages, not an event per page
                    emit(f"external_accounts: page {pages}, {len(seen)} accounts so far")
            return list(seen.values()), pages, repeats, api.stats_snapshot()

    accounts, pages, repeats, stats = run_cancellable(listing(), cancelled, what="external_accounts")
    observed_at = dt.datetime.now(dt.UTC)
    table = records.accounts_table(accounts, observed_at=observed_at, run_id=run_id)
    with publishing(lake, TABLE):
        path = lake.replace_partition(TABLE, observed_at.date(), table)
    if repeats:
        emit(f"the listing repeated {repeats} accounts across pages; each is kept once")
    emit(f"external_accounts: {len(accounts)} accounts in {pages} pages -> {path}")
    return ListingSummary(len(accounts), pages, repeats, observed_at, path, stats, table)


def latest_accounts(lake: Lake) -> tuple[list[str], dt.date]:
    """Account ids of the newest snapshot, and the date it was taken.

    Read under the table's shared lock: another run may be replacing today's snapshot, and in an
    object store a read that spans the replacement fails (its ranged GETs carry the old ETag)."""
    with lake.reading(TABLE):
        days = lake.partitions(TABLE)
        if not days:
            raise NoSnapshotError("no external_accounts snapshot yet: materialize external_accounts first")
        table = lake.read_partition(TABLE, days[-1], columns=["account_id"])
    return table.column("account_id").to_pylist(), days[-1]
