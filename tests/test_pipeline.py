"""The ingestion end to end: real Dagster runs against the sandbox, real Parquet, real DuckDB."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets.schedules import build_daily_schedule
from pipelines import warehouse
from pipelines.ingest.listing import latest_accounts
from pipelines.run import backfill_command
from pipelines.sandbox.process import sandbox_process
from pipelines.sandbox.world import DRIFT_CENTS
from pipelines.settings import REPO_ROOT, ConfigError, resolve_api_key
from pipelines.synctera import SyncteraClient

from .conftest import Pipeline, assert_matches_ground_truth, observe_balances_on, utc_today, warehouse_rows

ONE_DAY = dt.timedelta(days=1)


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    assert events, f"{asset} was not materialized"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def _partition_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict[str, Any]]:
    """Each partition's materialization metadata, by partition key."""
    return {
        str(e.materialization.partition): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == [asset]
    }


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    evaluations = result.get_asset_check_evaluations()
    matching = [e for e in evaluations if e.check_name == name]
    assert matching, f"check {name} did not run"
    return matching[-1]


def test_backfill_equals_ground_truth_except_flagged_days(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    start = end - 29 * ONE_DAY
    result = pipeline.materialize(start, end)
    assert result.success

    capped = assert_matches_ground_truth(pipeline, start, end)
    assert capped, "the default data plants capped days in the last 30"
    check = _check(result, "no_incomplete_days")
    assert not check.passed
    reported = {
        (x["account_id"], dt.date.fromisoformat(x["date"])) for x in check.metadata["account_days"].value
    }
    assert reported == capped
    assert _check(result, "unique_transaction_keys").passed

    ledger = warehouse_rows(
        pipeline, "SELECT count(*), count(*) FILTER (outcome = 'flagged') FROM transaction_windows"
    )
    tags = pipeline.last_run_tags
    assert ledger == [(int(tags["synctera/transaction_calls"]), len(capped))]
    assert int(tags["synctera/incomplete_account_days"]) == len(capped)
    assert int(tags["synctera/transaction_calls"]) >= len(pipeline.sandbox.accounts())
    assert tags["synctera/api_retries"] == "0"


def test_each_partition_carries_its_own_days_figures(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    start = end - 29 * ONE_DAY
    result = pipeline.materialize(start, end)
    assert result.success
    by_day = _partition_metadata(result, "transactions")
    assert sorted(by_day) == [(start + n * ONE_DAY).isoformat() for n in range(30)]
    truth = {
        day.isoformat(): (rows, accounts)
        for day, rows, accounts in warehouse_rows(
            pipeline, "SELECT date, count(*), count(DISTINCT account_id) FROM transactions GROUP BY date"
        )
    }
    flagged = warehouse_rows(
        pipeline, "SELECT start_date, account_id FROM transaction_windows WHERE outcome = 'flagged'"
    )
    proving = dict(
        warehouse_rows(
            pipeline,
            "SELECT d.day, count(*) FROM transaction_windows w, "
            "(SELECT unnest(range(?::DATE, ?::DATE + 1, INTERVAL 1 DAY))::DATE AS day) d "
            "WHERE w.outcome = 'complete' AND d.day >= w.start_date AND d.day < w.end_date GROUP BY d.day",
            [start, end],
        )
    )
    for day, meta in by_day.items():
        rows, accounts = truth.get(day, (0, 0))
        assert (meta["rows_written"], meta["accounts_with_rows"]) == (rows, accounts), day
        assert meta["partition_rows"] == rows, "one run over an empty lake: the partition is its rows"
        assert meta["windows_complete"] == proving.get(dt.date.fromisoformat(day), 0), day
        on_day = sorted(a for d, a in flagged if d.isoformat() == day)
        assert meta["incomplete_accounts"] == len(on_day), day
        assert meta["incomplete_account_ids"] == (", ".join(on_day) or "none"), day
    assert len({m["rows_written"] for m in by_day.values()}) > 1, "days differ: not one run total repeated"
    assert "transaction_calls" not in next(iter(by_day.values())), "run totals are on the run, once"
    assert int(pipeline.last_run_tags["synctera/transactions_rows"]) == sum(r for r, _ in truth.values())


def test_a_rerun_leaves_identical_data(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    start = end - 6 * ONE_DAY
    # A flagged day (500 rows on one day) holds whichever 500 the API returned: those may differ.
    snapshot = (
        "SELECT account_id, transaction_id, date, amount, is_pending, merchant_name FROM transactions t "
        "WHERE NOT EXISTS (SELECT 1 FROM transaction_windows w WHERE w.outcome = 'flagged' "
        "AND w.account_id = t.account_id AND w.start_date = t.date) "
        "ORDER BY account_id, transaction_id COLLATE NOCASE, transaction_id"
    )
    assert pipeline.materialize(start, end).success
    first = warehouse_rows(pipeline, snapshot)
    files = sorted(p.relative_to(pipeline.data_dir) for p in pipeline.data_dir.rglob("*.parquet"))
    assert pipeline.materialize(start, end).success
    assert warehouse_rows(pipeline, snapshot) == first
    assert sorted(p.relative_to(pipeline.data_dir) for p in pipeline.data_dir.rglob("*.parquet")) == files
    assert not list((pipeline.data_dir / ".staging").glob("*.parquet")), "no staging file left behind"


def test_every_day_of_the_range_has_a_partition_even_when_empty(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    start = end - 4 * ONE_DAY
    assert pipeline.materialize(start, end).success
    assert pipeline.lake.partitions("transactions") == [start + n * ONE_DAY for n in range(5)]
    types = dict(warehouse_rows(pipeline, "SELECT column_name, column_type FROM (DESCRIBE transactions)"))
    assert types["amount"] == "BIGINT"
    assert types["date"] == "DATE"
    assert types["fetched_at"] == "TIMESTAMP WITH TIME ZONE"


def test_balance_failures_are_rows_not_run_failures(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    result = pipeline.materialize(end, end, max_age=600)
    assert result.success
    rows = warehouse_rows(
        pipeline,
        "SELECT account_id, current, error, error_status, error_code, observed_at, date FROM balances",
    )
    by_account = {r[0]: r for r in rows}
    listed = [a["id"] for a in pipeline.sandbox.accounts()]
    assert sorted(by_account) == sorted(listed), "one row per account, failed or not"
    profiles = pipeline.sandbox.world.profiles
    for account_id, current, error, status, code, observed_at, date in rows:
        profile = profiles[account_id]
        assert date == observed_at.astimezone(dt.UTC).date()
        if profile.vendor_times_out:
            assert (status, code) == (504, "VENDOR_TIMEOUT")
        elif profile.balance_age_seconds > 600:
            assert (status, code) == (422, "BALANCE_TOO_OLD")
            assert "older than max_age" in error
        else:
            assert error is None and isinstance(current, int)
    meta = _metadata(result, "balances")
    assert meta["errors"] == sum(1 for r in rows if r[2] is not None) > 0


def test_the_listing_and_balances_are_observations_of_now_not_past_partitions(pipeline: Pipeline) -> None:
    end = utc_today() - 10 * ONE_DAY
    result = pipeline.materialize(end - ONE_DAY, end)
    assert result.success
    events = result.get_asset_materialization_events()
    partitions = {(e.asset_key.path[0], e.materialization.partition) for e in events}
    assert partitions == {
        ("external_accounts", None),
        ("balances", None),
        ("report", None),
        ("transactions", (end - ONE_DAY).isoformat()),
        ("transactions", end.isoformat()),
    }
    observed = warehouse_rows(
        pipeline, "SELECT DISTINCT date FROM balances UNION SELECT date FROM external_accounts"
    )
    assert observed == [(utc_today(),)], "observations are filed under the day they were taken"
    assert pipeline.lake.partitions("transactions") == [end - ONE_DAY, end]


def test_a_transactions_backfill_alone_on_a_fresh_lake_takes_the_listing_first(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    result = pipeline.materialize(end - 2 * ONE_DAY, end, selection=["transactions"])
    assert result.success
    listed = {a["id"] for a in pipeline.sandbox.accounts()}
    snapshot = {r[0] for r in warehouse_rows(pipeline, "SELECT account_id FROM external_accounts")}
    assert snapshot == listed
    recorded = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path == ["external_accounts"]
    ]
    assert len(recorded) == 1 and recorded[0].materialization.metadata["accounts"].value == len(listed)
    assert_matches_ground_truth(pipeline, end - 2 * ONE_DAY, end)


def test_schedule_asks_for_yesterday_and_the_lookback_in_one_run(pipeline: Pipeline) -> None:
    schedule = build_daily_schedule(pipeline.partitions, lookback_days=3)
    when = dt.datetime.combine(utc_today(), dt.time(2, 30), dt.UTC)
    context = dg.build_schedule_context(scheduled_execution_time=when)
    request = schedule.evaluate_tick(context).run_requests
    assert request is not None and len(request) == 1
    yesterday = utc_today() - ONE_DAY
    assert request[0].partition_key_range == dg.PartitionKeyRange(
        (yesterday - 3 * ONE_DAY).isoformat(), yesterday.isoformat()
    )
    assert request[0].run_key == f"daily-{yesterday.isoformat()}"


def test_the_api_key_is_nowhere_on_disk_after_a_run(pipeline: Pipeline, api_key: str) -> None:
    pipeline.sandbox.faults.inject(["503", "429-header", "drop"], endpoint="transactions")
    end = utc_today() - ONE_DAY
    assert pipeline.materialize(end - 2 * ONE_DAY, end).success
    needle = api_key.encode()
    scanned = 0
    for root in (pipeline.dagster_home, pipeline.data_dir):
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                assert needle not in path.read_bytes(), f"the API key leaked into {path}"
    assert scanned > 10


def test_a_missing_key_for_a_remote_api_fails_before_any_call() -> None:
    with pytest.raises(ConfigError, match="SYNCTERA_API_KEY"):
        resolve_api_key("https://api.synctera.com/v0", None)
    assert resolve_api_key("http://127.0.0.1:9/v0", None)


@pytest.mark.slow
def test_cli_partition_range_backfill_end_to_end(tmp_path: Path) -> None:
    """What an operator types, in a subprocess, against a faulty sandbox in its own process; then
    the API key is searched for everywhere the run left a trace: zero occurrences."""
    end = utc_today() - ONE_DAY
    start = end - 6 * ONE_DAY
    key = "sk_test_cli_" + os.urandom(8).hex()
    faults = [
        "--fault",
        "503=0.05",
        "--fault",
        "429-header=0.05",
        "--fault",
        "drop=0.03",
        "--retry-after",
        "0",
    ]
    with sandbox_process(["--accounts", "12", *faults], api_key=key) as base_url:
        env = {
            **os.environ,
            "SYNCTERA_BASE_URL": base_url,
            "SYNCTERA_API_KEY": key,
            "SYNCTERA_DATA_DIR": str(tmp_path / "data"),
            "SYNCTERA_START_DATE": (end - 60 * ONE_DAY).isoformat(),
            "DAGSTER_HOME": str(tmp_path / "home"),
        }
        (tmp_path / "home").mkdir()
        command = backfill_command(start, end)
        finished = subprocess.run(
            command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
        )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Retrying" in finished.stderr + finished.stdout, "the faults were met and retried"
    assert key not in finished.stdout + finished.stderr
    scanned = 0
    for path in [*(tmp_path / "home").rglob("*"), *(tmp_path / "data").rglob("*")]:
        if path.is_file():
            scanned += 1
            assert key.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    assert scanned > 20
    assert list((tmp_path / "home").rglob("compute_logs/*.err")), "compute logs were among the files searched"

    connection = warehouse.connect(tmp_path / "data")
    try:
        (rows,) = connection.execute("SELECT count(*) FROM transactions").fetchone() or (0,)
        dates = connection.execute(
            "SELECT min(start_date), max(end_date) FROM transaction_windows"
        ).fetchone()
        (accounts,) = connection.execute("SELECT count(*) FROM external_accounts").fetchone() or (0,)
    finally:
        connection.close()
    assert rows > 0
    assert dates == (start, end + ONE_DAY), "the ledger covers the range, end exclusive"
    assert 0 < accounts <= 12


def test_an_account_that_leaves_the_listing_keeps_its_ingested_history(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    assert pipeline.materialize(end - 5 * ONE_DAY, end).success
    counts = dict(warehouse_rows(pipeline, "SELECT account_id, count(*) FROM transactions GROUP BY ALL"))
    leaving = max(counts, key=lambda a: counts[a])
    with SyncteraClient(base_url=pipeline.server.base_url, api_key=pipeline.api_key) as client:
        client.delete_external_account(leaving)
    assert pipeline.materialize(end - 3 * ONE_DAY, end).success  # the daily lookback, re-fetched
    listed = {
        r[0]
        for r in warehouse_rows(
            pipeline, "SELECT account_id FROM external_accounts WHERE date = ?", [utc_today()]
        )
    }
    assert leaving not in listed
    assert (
        dict(warehouse_rows(pipeline, "SELECT account_id, count(*) FROM transactions GROUP BY ALL")) == counts
    )


def test_the_reconciliation_check_runs_after_each_run_and_names_a_drifting_account(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(drift_account=9)
    drifting = next(p for p in pipeline.sandbox.world.profiles.values() if p.index == 9)
    assert not drifting.vendor_times_out and not drifting.requires_max_age
    first = pipeline.materialize(utc_today() - 12 * ONE_DAY, utc_today() - 11 * ONE_DAY)
    assert first.success
    check = _check(first, "balances_reconcile_with_transactions")
    assert check.passed and check.description.startswith("No account has two error-free")

    # Two earlier days' observations, as the daily runs of those days would have taken them.
    account_ids, _ = latest_accounts(pipeline.lake)
    observe_balances_on(
        pipeline.server, pipeline.lake, account_ids, [utc_today() - 8 * ONE_DAY, utc_today() - 6 * ONE_DAY]
    )
    pipeline.sandbox.today = utc_today()
    end = utc_today() - ONE_DAY
    second = pipeline.materialize(end - 9 * ONE_DAY, end, max_age=10**9)
    check = _check(second, "balances_reconcile_with_transactions")
    assert not check.passed
    wrong = check.metadata["accounts_not_reconciling"].value
    assert [(m["account_id"], m["difference"]) for m in wrong] == [(drifting.id, 2 * DRIFT_CENTS)]
    assert check.metadata["reconciled"].value > 10, "the other accounts' settled changes reconcile"
    assert check.metadata["waiting_to_settle"].value > 0, "today's change waits for its days to settle"
    assert drifting.id in check.description


def test_without_a_base_url_a_cli_run_fails_naming_it_and_never_calls_the_sandbox(tmp_path: Path) -> None:
    """Production never falls back to the local sandbox: only make run, make ui and tests set it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTERA_")}
    env |= {"DAGSTER_HOME": str(tmp_path / "home"), "SYNCTERA_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "home").mkdir()
    yesterday = utc_today() - ONE_DAY
    finished = subprocess.run(
        backfill_command(yesterday, yesterday),
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode != 0
    assert "SYNCTERA_BASE_URL" in finished.stdout + finished.stderr
    assert not (tmp_path / "data" / "external_accounts").exists(), "nothing was listed"
