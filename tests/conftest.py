"""Shared fixtures: a real sandbox on a free loopback port, and clients pointed at it."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from assets import build_assets
from assets.resources import IngestResource, LakeResource, SyncteraApi
from pipelines import warehouse
from pipelines.ingest.balances import observe_balances
from pipelines.lake import Lake
from pipelines.sandbox import RunningSandbox, Sandbox, SandboxConfig, running
from pipelines.synctera import AsyncSyncteraClient, RetryPolicy, SyncteraClient

from .services import bucket, s3_settings

# Registered here, not in each module that uses them: one S3 server for the whole session.
__all__ = ["bucket", "s3_settings"]

TODAY = dt.date(2026, 11, 20)
"""A fixed sandbox "today", so that planted days and pending windows do not move with the calendar."""

FAST_RETRY = RetryPolicy(max_attempts=5, backoff_base=0.001, backoff_max=0.01, max_hint=0.01)
"""Real retries with tiny waits: the tests count attempts, they do not wait for them."""


@pytest.fixture
def api_key() -> str:
    """A distinctive key per test, so that a leak is found by a plain substring search."""
    return "sk_test_" + secrets.token_hex(16)


@pytest.fixture
def start_sandbox(api_key: str) -> Iterator[Callable[..., RunningSandbox]]:
    """Start sandboxes with any config overrides; all are stopped at the end of the test."""
    with ExitStack() as stack:

        def start(**overrides: object) -> RunningSandbox:
            options: dict[str, object] = {"seed": 7, "accounts": 40, "history_days": 120, "today": TODAY}
            options.update(api_key=api_key, **overrides)
            return stack.enter_context(running(Sandbox(SandboxConfig(**options))))  # type: ignore[arg-type]

        yield start


@pytest.fixture
def server(start_sandbox: Callable[..., RunningSandbox]) -> RunningSandbox:
    return start_sandbox()


@pytest.fixture
def sandbox(server: RunningSandbox) -> Sandbox:
    return server.sandbox


@pytest.fixture
def client(server: RunningSandbox) -> Iterator[SyncteraClient]:
    with SyncteraClient(base_url=server.base_url, api_key=server.api_key, retry=FAST_RETRY, seed=1) as c:
        yield c


@pytest.fixture
def async_client_factory(server: RunningSandbox) -> Callable[..., AsyncSyncteraClient]:
    def make(**options: object) -> AsyncSyncteraClient:
        options.setdefault("retry", FAST_RETRY)
        return AsyncSyncteraClient(base_url=server.base_url, api_key=server.api_key, **options)  # type: ignore[arg-type]

    return make


# --- the pipeline, materialized for real ---------------------------------------------------------


@dataclass
class Pipeline:
    """Real Dagster materializations against a running sandbox, in temporary directories."""

    server: RunningSandbox
    data_dir: Path
    dagster_home: Path
    api_key: str
    partitions: dg.DailyPartitionsDefinition
    assets: list[dg.AssetsDefinition]
    retry_attempts: int = 3
    last_run_tags: dict[str, str] = field(default_factory=dict)
    last_run_log: list[str] = field(default_factory=list)

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox

    @property
    def lake(self) -> Lake:
        return Lake(self.data_dir)

    def resources(self, synctera: dict[str, object] | None = None, **ingest: object) -> dict[str, object]:
        options: dict[str, object] = {
            "base_url": self.server.base_url,
            "api_key": self.api_key,
            "max_attempts": self.retry_attempts,
            "backoff_base_seconds": 0.001,
            "backoff_max_seconds": 0.01,
            "max_retry_wait_seconds": 0.01,
        }
        return {
            "synctera": SyncteraApi(**{**options, **(synctera or {})}),  # type: ignore[arg-type]
            "lake": LakeResource(data_dir=str(self.data_dir)),
            "ingest": IngestResource(**ingest),  # type: ignore[arg-type]
        }

    def materialize(
        self,
        start: dt.date,
        end: dt.date,
        *,
        synctera: dict[str, object] | None = None,
        selection: list[str] | None = None,
        instance: dg.DagsterInstance | None = None,
        **ingest: object,
    ) -> dg.ExecuteInProcessResult:
        """Materialize every asset (or ``selection``) for the partitions ``start..end`` (inclusive)
        as one run, in ``instance`` (default: SQLite under ``dagster_home``); the run's tags, as
        stored at its end, go to ``last_run_tags``, and its log's messages to ``last_run_log``."""
        with ExitStack() as stack:
            if instance is None:
                instance = stack.enter_context(dg.DagsterInstance.local_temp(tempdir=str(self.dagster_home)))
            result = dg.materialize(
                self.assets,
                instance=instance,
                resources=self.resources(synctera, **ingest),
                selection=selection,
                tags={
                    "dagster/asset_partition_range_start": start.isoformat(),
                    "dagster/asset_partition_range_end": end.isoformat(),
                },
                raise_on_error=False,
            )
            stored = instance.get_run_by_id(result.run_id)
            self.last_run_tags = dict(stored.tags) if stored else {}
            self.last_run_log = [e.user_message for e in instance.all_logs(result.run_id)]
            return result

    def warehouse(self) -> duckdb.DuckDBPyConnection:
        return warehouse.connect(self.data_dir)


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@pytest.fixture
def make_pipeline(
    tmp_path: Path, start_sandbox: Callable[..., RunningSandbox], api_key: str
) -> Callable[..., Pipeline]:
    """Pipelines over sandboxes (with any sandbox knobs) whose today is the real UTC today, as the
    partitions' is; each in its own directories."""
    made = 0

    def make(**sandbox: object) -> Pipeline:
        nonlocal made
        made += 1
        server = start_sandbox(**{"today": None, "history_days": 400, **sandbox})
        partitions = dg.DailyPartitionsDefinition(
            start_date=(utc_today() - dt.timedelta(days=300)).isoformat(), timezone="UTC"
        )
        assets = build_assets(partitions)
        root = tmp_path / f"pipeline-{made}"
        (root / "dagster_home").mkdir(parents=True)
        return Pipeline(server, root / "data", root / "dagster_home", api_key, partitions, assets)

    return make


@pytest.fixture
def pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline()


def warehouse_rows(pipeline: Pipeline, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    connection = pipeline.warehouse()
    try:
        return connection.execute(sql, params or []).fetchall()
    finally:
        connection.close()


def assert_matches_ground_truth(pipeline: Pipeline, start: dt.date, end: dt.date) -> set[tuple[str, dt.date]]:
    """The warehouse's transactions for ``start..end`` equal the sandbox's, except on capped days.

    Returns the capped account-days: there the warehouse must hold exactly 500 true rows.
    """
    return assert_warehouse_matches(pipeline.sandbox, pipeline.data_dir, start, end)


def views_of(lake: Lake | Path) -> duckdb.DuckDBPyConnection:
    """The warehouse's views over ``lake`` (a data directory's own file, or built in memory)."""
    if isinstance(lake, Path):
        return warehouse.connect(lake)
    connection = lake.duckdb()
    warehouse.create_views(connection, lake)
    return connection


def assert_warehouse_matches(
    sandbox: Sandbox, data_dir: Lake | Path, start: dt.date, end: dt.date
) -> set[tuple[str, dt.date]]:
    """``assert_matches_ground_truth`` for any warehouse and any sandbox (one in another process
    has the same data as one made here from the same arguments)."""
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    account_ids = [a["id"] for a in sandbox.accounts()]
    truth: dict[tuple[str, dt.date], dict[str, int]] = {}
    for account_id in account_ids:
        for day in days:
            rows = sandbox.true_transactions(account_id, day)
            if rows:
                truth[(account_id, day)] = {t["transaction_id"]: t["amount"] for t in rows}
    got: dict[tuple[str, dt.date], dict[str, int]] = {}
    connection = views_of(data_dir)
    try:
        rows = connection.execute(
            "SELECT account_id, date, transaction_id, amount FROM transactions WHERE date BETWEEN ? AND ?",
            [start, end],
        ).fetchall()
    finally:
        connection.close()
    for account_id, day, transaction_id, amount in rows:
        got.setdefault((account_id, day), {})[transaction_id] = amount
    assert sum(len(v) for v in got.values()) == len(rows), "no (account_id, transaction_id) twice"
    capped = {key for key, value in truth.items() if len(value) >= 500}
    for key in capped:
        assert len(got[key]) == 500 and got[key].items() <= truth[key].items(), f"capped day {key}"
    uncapped = {k: v for k, v in truth.items() if k not in capped}
    assert {k: v for k, v in got.items() if k not in capped} == uncapped
    return capped


def client_of(server: RunningSandbox) -> Callable[[], AsyncSyncteraClient]:
    """A factory of async clients of ``server``, retrying fast."""
    return lambda: AsyncSyncteraClient(base_url=server.base_url, api_key=server.api_key, retry=FAST_RETRY)


def ingest_on(
    server: RunningSandbox, lake: Lake, start: dt.date, end: dt.date, *, run_id: str = "tx"
) -> None:
    """Every account of ``lake``'s latest snapshot: its transactions of ``[start, end)``, in one process."""
    from pipelines.ingest.listing import latest_accounts
    from pipelines.ingest.transactions import ingest_transactions

    account_ids, snapshot_day = latest_accounts(lake)
    ingest_transactions(
        client_of(server),
        lake,
        start=start,
        end=end,
        account_ids=account_ids,
        snapshot_day=snapshot_day,
        concurrency=8,
        run_id=run_id,
        emit=lambda _: None,
    )


def observe_balances_on(
    server: RunningSandbox, lake: Lake, account_ids: list[str], days: list[dt.date]
) -> None:
    """Balances observed at 02:30 UTC on each of ``days``, as that day's daily run would have taken
    them (the sandbox's today moved to each day); its today is left at the last one."""
    for day in days:
        server.sandbox.today = day
        observe_balances(
            client_of(server),
            lake,
            account_ids,
            max_age=10**9,
            run_id=f"daily-{day}",
            emit=lambda _: None,
            clock=lambda day=day: dt.datetime.combine(day, dt.time(2, 30), dt.UTC),  # type: ignore[misc]
        )


def warehouse_facts(
    data_dir: Lake | Path,
) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]], set[tuple[object, ...]]]:
    """Rows on days not flagged, the (account, day)s proven complete, the flagged (account, day)s."""
    lake = data_dir if isinstance(data_dir, Lake) else Lake(data_dir)
    windows, transactions = lake.glob("transaction_windows"), lake.glob("transactions")
    connection = lake.duckdb()
    try:
        flagged = set(
            connection.execute(
                "SELECT account_id, start_date FROM read_parquet(?) WHERE outcome = 'flagged'", [windows]
            ).fetchall()
        )
        proven = set(
            connection.execute(
                "SELECT DISTINCT account_id, unnest(range(start_date, end_date, INTERVAL 1 DAY))::DATE "
                "FROM read_parquet(?) WHERE outcome = 'complete'",
                [windows],
            ).fetchall()
        )
        rows = set(
            connection.execute(
                # Whole rows as JSON text (some columns are lists), without the run's own stamps.
                "SELECT account_id, date, to_json(t) FROM (SELECT * EXCLUDE (fetched_at, run_id) "
                "FROM read_parquet(?, hive_partitioning = false)) AS t",
                [transactions],
            ).fetchall()
        )
    finally:
        connection.close()
    unflagged = {r for r in rows if (r[0], r[1]) not in flagged}
    return unflagged, proven, flagged
