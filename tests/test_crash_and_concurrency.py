"""Crash safety (kill -9 at random points) and concurrent runs, with the real CLI in subprocesses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import warehouse
from pipelines.lake import TABLES, Lake, lake_from_env
from pipelines.locks import LOCK_URL_VARIABLE
from pipelines.run import backfill_command
from pipelines.sandbox import Sandbox, SandboxConfig, running
from pipelines.sandbox.process import sandbox_process
from pipelines.settings import REPO_ROOT

from .conftest import utc_today
from .services import PG, database

__all__ = ["database"]  # fixtures of services, used here

ONE_DAY = dt.timedelta(days=1)
END = utc_today() - ONE_DAY
START = END - 13 * ONE_DAY
SANDBOX_ARGS = ["--accounts", "30", "--seed", "5"]
CONTENT = (
    "SELECT account_id, transaction_id, date, amount, is_pending FROM transactions "
    "ORDER BY account_id, transaction_id COLLATE NOCASE, transaction_id"
)


def _cli(base_url: str, key: str, lake: Lake, home: Path, **extra: str) -> subprocess.Popen[bytes]:
    """The operator's backfill command on ``lake``; its output goes to ``home/cli.log``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **extra,
        "SYNCTERA_BASE_URL": base_url,
        "SYNCTERA_API_KEY": key,
        "SYNCTERA_DATA_DIR": lake.location,
        "SYNCTERA_WORK_DIR": str(lake.root),
        "SYNCTERA_START_DATE": (END - 60 * ONE_DAY).isoformat(),
        "DAGSTER_HOME": str(home),
        "PYTHONWARNINGS": "ignore",
    }
    command = backfill_command(START, END)
    log = os.open(home / "cli.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # Its own session, so that a kill takes the step subprocesses down too, as a crash would.
        return subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=log, stderr=log, start_new_session=True
        )
    finally:
        os.close(log)


def _clean_run(tmp_path: Path, base_url: str, key: str) -> list[tuple[object, ...]]:
    """The warehouse content of an uninterrupted run in a directory of its own: the reference."""
    clean = Lake(tmp_path / "clean")
    run = _cli(base_url, key, clean, tmp_path / "clean-home")
    assert run.wait(timeout=300) == 0, _log_tail(tmp_path / "clean-home")
    return _content(clean)


def _log_tail(home: Path) -> str:
    return (home / "cli.log").read_text(errors="replace")[-3000:]


def _content(lake: Lake) -> list[tuple[object, ...]]:
    connection = warehouse.connect(lake.root, store=lake.store)
    try:
        return connection.execute(CONTENT).fetchall()
    finally:
        connection.close()


def _only_partition_files(lake: Lake) -> None:
    """What the views glob (<table>/*/*.parquet) sees is only whole partition files."""
    for table in TABLES:
        if lake.store is not None:
            found = list(lake.store.files(table))
        else:
            found = [str(path) for path in (lake.root / table).glob("*/*")]
        for path in found:
            assert path.endswith("/part-0.parquet"), f"stray file visible to the views: {path}"


LAKES = ["directory", pytest.param("object store", marks=pytest.mark.scale_out)]


def _lake(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Lake, dict[str, str]]:
    """A lake for the runs under test, and their settings: a local directory (file locks, or locks
    in PostgreSQL for ``postgres``), or, for ``object store``, a bucket on the S3 test server
    (locks in PostgreSQL; each run given a work directory of its own, as on a machine of its own)."""
    if kind in ("object store", "postgres"):
        name = request.getfixturevalue("database")
        url = f"postgresql://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{name}"
        settings = {LOCK_URL_VARIABLE: url}
        if kind == "postgres":
            return Lake(tmp_path / "shared"), settings
        location = request.getfixturevalue("bucket") + "/shared"
        env = {"SYNCTERA_DATA_DIR": location, "SYNCTERA_WORK_DIR": str(tmp_path / "work")}
        return lake_from_env(env), settings
    return Lake(tmp_path / "shared"), {}


def _on_machine(lake: Lake, n: int) -> Lake:
    """``lake`` as the ``n``-th machine sees it: an object store's with a work directory of its own."""
    return (
        dataclasses.replace(lake, root=lake.root.with_name(f"{lake.root.name}-{n}")) if lake.store else lake
    )


@pytest.fixture
def sandbox_url() -> Iterator[tuple[str, str]]:
    key = "sk_test_crash_" + os.urandom(6).hex()
    with sandbox_process(SANDBOX_ARGS, api_key=key) as base_url:
        yield base_url, key


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "kills"), [("directory", 20), pytest.param("object store", 8, marks=pytest.mark.scale_out)]
)
def test_kill_9_at_random_points_then_rerun_equals_a_clean_run(
    tmp_path: Path, sandbox_url: tuple[str, str], kind: str, kills: int, request: pytest.FixtureRequest
) -> None:
    base_url, key = sandbox_url
    expected = _clean_run(tmp_path, base_url, key)
    assert expected

    rng = random.Random(20261123)
    lake, settings = _lake(kind, tmp_path, request)
    home = tmp_path / "crashy-home"
    killed_while_running = 0
    for _ in range(kills):
        run = _cli(base_url, key, lake, home, **settings)
        try:
            run.wait(timeout=rng.uniform(0.5, 9.0))  # the crash point: a random moment of the run
        except subprocess.TimeoutExpired:
            killed_while_running += 1
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        _only_partition_files(lake)
        if (lake.root / warehouse.WAREHOUSE).exists():
            _content(lake)  # whatever survived reads cleanly: no torn partition
    assert killed_while_running >= kills // 2
    final = _cli(base_url, key, lake, home, **settings)
    assert final.wait(timeout=300) == 0, _log_tail(home)
    _only_partition_files(lake)
    assert _content(lake) == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "directory",
        pytest.param("postgres", marks=pytest.mark.scale_out),
        pytest.param("object store", marks=pytest.mark.scale_out),
    ],
)
def test_two_runs_writing_the_same_partitions_at_once_leave_them_whole(
    tmp_path: Path, sandbox_url: tuple[str, str], kind: str, request: pytest.FixtureRequest
) -> None:
    """Two machines' runs on one lake: for ``postgres`` its locks in PostgreSQL; for ``object store``
    the lake in a bucket, each run with a work directory of its own."""
    base_url, key = sandbox_url
    expected = _clean_run(tmp_path, base_url, key)
    lake, settings = _lake(kind, tmp_path, request)
    runs = [_cli(base_url, key, _on_machine(lake, n), tmp_path / f"home-{n}", **settings) for n in range(2)]
    codes = [r.wait(timeout=300) for r in runs]
    assert codes == [0, 0], "\n".join(_log_tail(tmp_path / f"home-{n}") for n in range(2))
    _only_partition_files(lake)
    for n in range(2):
        assert _content(_on_machine(lake, n)) == expected
    if lake.store is not None:  # the store's secret key is nowhere the runs wrote
        secret = os.environ["AWS_SECRET_ACCESS_KEY"].encode()
        places = [tmp_path / f"{place}-{n}" for place in ("home", "work") for n in range(2)]
        written = [p for d in places for p in d.rglob("*") if p.is_file()]
        assert written and not [p for p in written if secret in p.read_bytes()]


def test_a_shared_rate_budget_holds_across_processes(tmp_path: Path) -> None:
    """Two processes, one budget of 40 requests/s: together they do not exceed it."""
    sandbox = Sandbox(SandboxConfig(accounts=5, today=utc_today()))
    budget_file = tmp_path / "budget"
    script = (
        "import sys; from pathlib import Path; "
        "from pipelines.synctera import SyncteraClient, SharedRateBudget; "
        "c = SyncteraClient(base_url=sys.argv[1], api_key=sys.argv[2], "
        "budget=SharedRateBudget(Path(sys.argv[3]), 40.0)); "
        "[c.list_external_accounts(limit=1) for _ in range(20)]"
    )
    with running(sandbox) as server:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", script, server.base_url, server.api_key, str(budget_file)]
            )
            for _ in range(2)
        ]
        assert [c.wait(timeout=60) for c in children] == [0, 0]
    starts = sorted(r.at for r in sandbox.records("list"))
    assert len(starts) == 40
    rate = (len(starts) - 1) / (starts[-1] - starts[0]).total_seconds()
    assert rate <= 40 * 1.05, f"{rate:.1f} requests/s over a budget of 40"
