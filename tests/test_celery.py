"""A backfill whose steps run on Celery workers (Dagster's Celery executor, RabbitMQ on loopback),
with the production instance on PostgreSQL and its accounts fetched in shards, each a step taken by
whichever worker is free: it lands the same warehouse as a run in one process, in one shard.

Two workers are separate ``python -m pipelines.worker`` processes started here, each stopped by its
own process group's id. The broker is a RabbitMQ virtual host and the instance a PostgreSQL database
of this test's own, both removed after it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import pytest

from pipelines.lake import lake_from_env
from pipelines.locks import LOCK_URL_VARIABLE
from pipelines.process_group import group
from pipelines.run import backfill_command, prepare_dagster_home
from pipelines.sandbox import Sandbox, SandboxConfig
from pipelines.sandbox.process import sandbox_process
from pipelines.settings import REPO_ROOT

from .conftest import assert_warehouse_matches, utc_today, warehouse_facts
from .services import PG, PG_VARIABLES, broker_url, celery_worker, database, instance_env

pytestmark = [pytest.mark.scale_out, pytest.mark.slow]
__all__ = ["broker_url", "database"]  # fixtures of services, used here

ONE_DAY = dt.timedelta(days=1)
KEY = "celery-test-key"
SANDBOX = {"seed": 5, "accounts": 12, "history_days": 40}
SHARDS = 3


def _backfill(env: Mapping[str, str], start: dt.date, end: dt.date) -> None:
    done = subprocess.run(
        backfill_command(start, end),
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _environments(
    tmp_path: Path, base_url: str, start: dt.date, database: str, broker_url: str, **extra: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The distributed run's environment (the production instance on PostgreSQL, steps on Celery
    workers, ``SHARDS`` shards) and a run in one process's, each with a lake and an instance of its own."""
    common = {
        **os.environ,
        "SYNCTERA_BASE_URL": base_url,
        "SYNCTERA_API_KEY": KEY,
        "SYNCTERA_START_DATE": (start - 10 * ONE_DAY).isoformat(),
        "PYTHONWARNINGS": "ignore",
        **extra,
    }
    home = tmp_path / "celery_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "pipelines" / "dagster.production.yaml", home / "dagster.yaml")
    distributed = {
        **common,
        "DAGSTER_HOME": str(home),
        "SYNCTERA_DATA_DIR": str(tmp_path / "celery_data"),
        "SYNCTERA_EXECUTOR": "celery",
        "SYNCTERA_SHARDS": str(SHARDS),
        "SYNCTERA_CELERY_BROKER": broker_url,
        **instance_env(database),
    }
    prepare_dagster_home(tmp_path / "local_home")
    local = {
        **common,
        "DAGSTER_HOME": str(tmp_path / "local_home"),
        "SYNCTERA_DATA_DIR": str(tmp_path / "local_data"),
    }
    return distributed, local


@pytest.mark.parametrize("lake", ["shared directory", "object store"])
def test_a_backfill_on_celery_workers_lands_the_warehouse_of_a_run_in_one_process(
    tmp_path: Path,
    database: str,
    broker_url: str,
    monkeypatch: pytest.MonkeyPatch,
    lake: str,
    request: pytest.FixtureRequest,
) -> None:
    """With ``object store``, the lake is a bucket and every process (the launcher, each worker) has
    a work directory of its own, as on machines of their own: shards sealed by one worker reach the
    publish step on another through the bucket."""
    end = utc_today() - ONE_DAY
    start = end - 20 * ONE_DAY
    sandbox_args = [f"--{k.replace('_', '-')}={v}" for k, v in SANDBOX.items()]
    names = ["worker-a@synctera-test", "worker-b@synctera-test"]
    on_store: dict[str, str] = {}
    if lake == "object store":
        lock_url = f"postgresql://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{database}"
        location = request.getfixturevalue("bucket") + "/celery"
        on_store = {"SYNCTERA_DATA_DIR": location, LOCK_URL_VARIABLE: lock_url}
    with ExitStack() as stack:
        base_url = stack.enter_context(sandbox_process(sandbox_args, api_key=KEY))
        distributed, local = _environments(tmp_path, base_url, start, database, broker_url)
        distributed |= on_store | ({"SYNCTERA_WORK_DIR": str(tmp_path / "work-launcher")} if on_store else {})
        for name in names:
            own = {"SYNCTERA_WORK_DIR": str(tmp_path / f"work-{name}")} if on_store else {}
            stack.enter_context(celery_worker(name, distributed | own, tmp_path / f"{name}.log"))
        _backfill(distributed, start, end)
        _backfill(local, start, end)
    celery_lake = lake_from_env(distributed)

    # Every step of the distributed run was executed by one of the workers.
    for key in PG_VARIABLES:
        monkeypatch.setenv(key, distributed[key])
    home = Path(distributed["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        delegated = [
            e
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if "in celery worker" in e.message
        ]
        steps = {e.step_key for e in delegated}
        succeeded = {
            e.step_key for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        }
        worker_of = {
            e.step_key: e.dagster_event.engine_event_data.metadata["Celery worker"].value
            for e in delegated
            if e.dagster_event
        }
    shard_steps = {f"transactions.shard_{k}_of_{SHARDS}" for k in range(SHARDS)}
    assert steps == succeeded
    assert {
        "external_accounts",
        "transactions.accounts",
        "transactions.publish",
        "balances",
        "report",
    } <= steps
    assert shard_steps <= steps
    assert set(worker_of.values()) <= set(names)
    # Each worker takes one step at a time: three shards queued at once went to both.
    assert {worker_of[step] for step in shard_steps} == set(names)

    # The same warehouse: every row of every day not flagged, the same proven and flagged days.
    celery_rows, celery_proven, celery_flagged = warehouse_facts(celery_lake)
    local_rows, local_proven, local_flagged = warehouse_facts(tmp_path / "local_data")
    assert celery_rows == local_rows and celery_rows
    assert celery_proven == local_proven and celery_proven
    assert celery_flagged == local_flagged
    # ... and both are the sandbox's truth (a flagged day holds 500 of its true rows).
    truth = Sandbox(SandboxConfig(**SANDBOX))  # type: ignore[arg-type]
    assert assert_warehouse_matches(truth, celery_lake, start, end)
    assert_warehouse_matches(truth, tmp_path / "local_data", start, end)
    if celery_lake.store is not None:  # the bucket holds partitions alone: the seals are gone
        files = celery_lake.store.files("")
        assert files and [k for k in files if not k.endswith("/part-0.parquet")] == []


def test_a_worker_killed_mid_shard_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, database: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of the worker fetching a shard: the broker hands the step to the other worker (it was
    not acknowledged), which fetches the shard again and replaces the seal; the warehouse equals a
    run in one process's. Should the run fail instead, running the backfill again must get there."""
    end = utc_today() - ONE_DAY
    start = end - 20 * ONE_DAY
    # One account at a time, transactions answered in 0.3 s: a shard takes seconds, room to kill it.
    sandbox_args = [f"--{k.replace('_', '-')}={v}" for k, v in SANDBOX.items()] + [
        "--latency",
        "transactions=0.3",
    ]
    names = ["worker-a@synctera-test", "worker-b@synctera-test"]
    with ExitStack() as stack:
        base_url = stack.enter_context(sandbox_process(sandbox_args, api_key=KEY))
        distributed, local = _environments(
            tmp_path, base_url, start, database, broker_url, SYNCTERA_ACCOUNT_CONCURRENCY="1"
        )
        workers = {
            name: stack.enter_context(celery_worker(name, distributed, tmp_path / f"{name}.log"))
            for name in names
        }
        for key in PG_VARIABLES:
            monkeypatch.setenv(key, distributed[key])
        log = tmp_path / "backfill.log"
        backfill = stack.enter_context(
            group(backfill_command(start, end), env=distributed, cwd=REPO_ROOT, log=log)
        )
        killed_step, killed = _kill_the_worker_of_a_shard(Path(distributed["DAGSTER_HOME"]), workers)
        code = backfill.wait(timeout=600)
        with dg.DagsterInstance.from_config(distributed["DAGSTER_HOME"]) as instance:
            (run,) = instance.get_runs()
            succeeded_by = [
                e.dagster_event.engine_event_data.metadata["Celery worker"].value
                for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
                if e.step_key == killed_step and "in celery worker" in e.message and e.dagster_event
            ]
        if code == 0:
            # The step ran again on the worker left alive.
            assert succeeded_by[0] == killed and set(succeeded_by[1:]) == set(names) - {killed}, succeeded_by
        else:
            _backfill(distributed, start, end)  # the operator's retry
        _backfill(local, start, end)

    assert warehouse_facts(tmp_path / "celery_data") == warehouse_facts(tmp_path / "local_data")
    assert (
        assert_warehouse_matches(
            Sandbox(SandboxConfig(**SANDBOX)),
            tmp_path / "celery_data",
            start,
            end,  # type: ignore[arg-type]
        )
        is not None
    )


def _kill_the_worker_of_a_shard(
    home: Path, workers: Mapping[str, subprocess.Popen[bytes]]
) -> tuple[str, str]:
    """SIGKILL to the whole process group of the first worker seen running a shard step; returns the
    step and the worker's name."""
    deadline = time.monotonic() + 300
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            for run in instance.get_runs():
                for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                    step = event.step_key or ""
                    if ".shard_" in step and "in celery worker" in event.message and event.dagster_event:
                        name = event.dagster_event.engine_event_data.metadata["Celery worker"].value
                        os.killpg(workers[name].pid, signal.SIGKILL)
                        return step, str(name)
            time.sleep(0.2)  # a poll interval, bounded by the deadline
    raise AssertionError("no shard step started on a worker")
