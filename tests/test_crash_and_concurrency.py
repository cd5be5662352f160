"""Crash safety (kill -9 at random points) and concurrent runs, with the real CLI in subprocesses."""

from __future__ import annotations

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
from pipelines.locks import LOCK_URL_VARIABLE
from pipelines.run import backfill_command
from pipelines.sandbox import Sandbox, SandboxConfig, running
from pipelines.sandbox.process import sandbox_process
from pipelines.settings import REPO_ROOT

from .conftest import utc_today
from .services import PG, database

__all__ = ["database"]  # a fixture of services, used here

ONE_DAY = dt.timedelta(days=1)
END = utc_today() - ONE_DAY
START = END - 13 * ONE_DAY
SANDBOX_ARGS = ["--accounts", "30", "--seed", "5"]
CONTENT = (
    "SELECT account_id, transaction_id, date, amount, is_pending FROM transactions "
    "ORDER BY account_id, transaction_id COLLATE NOCASE, transaction_id"
)


def _cli(base_url: str, key: str, data_dir: Path, home: Path, **extra: str) -> subprocess.Popen[bytes]:
    """The operator's backfill command; its output goes to ``home/cli.log``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **extra,
        "SYNCTERA_BASE_URL": base_url,
        "SYNCTERA_API_KEY": key,
        "SYNCTERA_DATA_DIR": str(data_dir),
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
    clean = _cli(base_url, key, tmp_path / "clean", tmp_path / "clean-home")
    assert clean.wait(timeout=300) == 0, _log_tail(tmp_path / "clean-home")
    return _content(tmp_path / "clean")


def _log_tail(home: Path) -> str:
    return (home / "cli.log").read_text(errors="replace")[-3000:]


def _content(data_dir: Path) -> list[tuple[object, ...]]:
    connection = warehouse.connect(data_dir)
    try:
        return connection.execute(CONTENT).fetchall()
    finally:
        connection.close()


def _only_partition_files(data_dir: Path) -> None:
    """What the views glob (<table>/*/*.parquet) sees is only whole partition files."""
    for table in ("external_accounts", "balances", "transactions", "transaction_windows"):
        for path in (data_dir / table).glob("*/*"):
            assert path.name == "part-0.parquet", f"stray file visible to the views: {path}"


@pytest.fixture
def sandbox_url() -> Iterator[tuple[str, str]]:
    key = "sk_test_crash_" + os.urandom(6).hex()
    with sandbox_process(SANDBOX_ARGS, api_key=key) as base_url:
        yield base_url, key


@pytest.mark.slow
def test_kill_9_at_random_points_then_rerun_equals_a_clean_run(
    tmp_path: Path, sandbox_url: tuple[str, str]
) -> None:
    base_url, key = sandbox_url
    expected = _clean_run(tmp_path, base_url, key)
    assert expected

    rng = random.Random(20261123)
    data_dir, home = tmp_path / "crashy", tmp_path / "crashy-home"
    killed_while_running = 0
    for _ in range(20):
        run = _cli(base_url, key, data_dir, home)
        try:
            run.wait(timeout=rng.uniform(0.5, 9.0))  # the crash point: a random moment of the run
        except subprocess.TimeoutExpired:
            killed_while_running += 1
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        _only_partition_files(data_dir)
        if (data_dir / warehouse.WAREHOUSE).exists():
            _content(data_dir)  # whatever survived reads cleanly: no torn partition
    assert killed_while_running >= 10
    final = _cli(base_url, key, data_dir, home)
    assert final.wait(timeout=300) == 0, _log_tail(home)
    _only_partition_files(data_dir)
    assert _content(data_dir) == expected


@pytest.mark.slow
@pytest.mark.parametrize("locks", ["files", pytest.param("postgres", marks=pytest.mark.scale_out)])
def test_two_runs_writing_the_same_partitions_at_once_leave_them_whole(
    tmp_path: Path, sandbox_url: tuple[str, str], locks: str, request: pytest.FixtureRequest
) -> None:
    """Two machines' runs on one lake, for ``postgres``: the lake's locks in PostgreSQL."""
    base_url, key = sandbox_url
    expected = _clean_run(tmp_path, base_url, key)
    extra = {}
    if locks == "postgres":
        name = request.getfixturevalue("database")
        extra[LOCK_URL_VARIABLE] = (
            f"postgresql://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{name}"
        )
    runs = [_cli(base_url, key, tmp_path / "shared", tmp_path / f"home-{n}", **extra) for n in range(2)]
    codes = [r.wait(timeout=300) for r in runs]
    assert codes == [0, 0], "\n".join(_log_tail(tmp_path / f"home-{n}") for n in range(2))
    _only_partition_files(tmp_path / "shared")
    assert _content(tmp_path / "shared") == expected


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
