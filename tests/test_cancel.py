"""A run asked to stop while it fetches stops within about a second and writes nothing."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from assets.common import run_cancelled
from pipelines.ingest import RunCancelled
from pipelines.ingest.listing import latest_accounts, take_listing
from pipelines.ingest.transactions import ingest_transactions
from pipelines.lake import STAGING, Lake
from pipelines.sandbox import RunningSandbox
from pipelines.synctera import AsyncSyncteraClient

from .conftest import FAST_RETRY, utc_today

ONE_DAY = dt.timedelta(days=1)


def test_a_cancelled_fetch_stops_promptly_and_writes_nothing(
    start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> None:
    server = start_sandbox(today=None, accounts=12, latency={"transactions": 0.5})

    def client() -> AsyncSyncteraClient:
        return AsyncSyncteraClient(base_url=server.base_url, api_key=server.api_key, retry=FAST_RETRY)

    lake = Lake(tmp_path / "data")
    take_listing(client, lake, include_history=False, run_id="listing", emit=lambda _: None)
    account_ids, snapshot_day = latest_accounts(lake)
    asked_at = time.monotonic() + 1.2
    with pytest.raises(RunCancelled, match="cancelled while fetching; nothing was written"):
        ingest_transactions(
            client,
            lake,
            start=utc_today() - 90 * ONE_DAY,
            end=utc_today(),
            account_ids=account_ids,
            snapshot_day=snapshot_day,
            concurrency=1,  # 12 accounts at 0.5 s a call: several seconds unless stopped
            run_id="cancelled",
            emit=lambda _: None,
            cancelled=lambda: time.monotonic() > asked_at,
        )
    assert len(server.sandbox.records("transactions")) < len(account_ids), "not every account was fetched"
    assert lake.partitions("transactions") == [] and lake.partitions("transaction_windows") == []
    assert not list((lake.root / STAGING).glob("spool-*")), "the spool went with the run"


def test_the_run_storage_says_cancelled_once_the_run_is_cancelling_cancelled_or_deleted(
    tmp_path: Path,
) -> None:
    @dg.asset
    def nothing() -> None:
        return None

    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path)) as instance:
        runs = [dg.materialize([nothing], instance=instance).run_id for _ in range(3)]
        checks = [run_cancelled(instance, run_id, logging.getLogger("test")) for run_id in runs]
        assert [check() for check in checks] == [False, False, False]  # finished, not cancelled
        first, second, third = (instance.get_run_by_id(run_id) for run_id in runs)
        assert first is not None and second is not None
        instance.report_run_canceling(first)
        instance.report_run_canceled(second)
        instance.delete_run(runs[2])
        assert third is not None and instance.get_run_by_id(runs[2]) is None
        assert [check() for check in checks] == [True, True, True]
