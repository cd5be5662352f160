"""The lake's locks across machines: PostgreSQL advisory locks on a real server, held by another
process, seen from this one through the database, and gone with their holder when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

from pipelines.lake import Lake
from pipelines.locks import LOCK_URL_VARIABLE, FileLocks, LockLostError, PostgresLocks, lake_id, locks_for

from .services import PG, database
from .test_lake import DAY, _rows

pytestmark = pytest.mark.scale_out
__all__ = ["database"]  # a fixture of services, used here

HOLDER = """
import sys
from pathlib import Path
from pipelines.lake import Lake
lake = Lake(Path(sys.argv[1]))
hold = lake.reading("transactions", "balances") if sys.argv[2] == "shared" else lake.lock("transactions")
with hold:
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it, or kills this process
"""


def _url(name: str) -> str:
    return f"postgresql://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{name}"


@contextmanager
def _holder(lake: Path, mode: str, url: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lake's ``transactions`` lock (``exclusive`` or ``shared``)."""
    env = {**os.environ, LOCK_URL_VARIABLE: url}
    command = [sys.executable, "-c", HOLDER, str(lake), mode]
    with subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "held"
            yield process
        finally:
            process.kill()  # the pipes are closed and the process reaped on leaving the block


def _try(url: str, key: int, *, shared: bool) -> bool:
    """Whether this session could take the lock now (and let it go at once)."""
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            kind = "_shared" if shared else ""
            cursor.execute(f"SELECT pg_try_advisory_lock{kind}(%s)", [key])
            (taken,) = cursor.fetchone()
            return bool(taken)
    finally:
        connection.close()


def test_a_writer_s_lock_is_seen_by_every_session_and_dies_with_its_holder(
    tmp_path: Path, database: str
) -> None:
    url = _url(database)
    locks = locks_for(tmp_path, {LOCK_URL_VARIABLE: url})
    assert isinstance(locks, PostgresLocks)
    key = locks.key("transactions")
    with _holder(tmp_path, "exclusive", url) as holder:
        assert not _try(url, key, shared=False) and not _try(url, key, shared=True)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 30
        while not _try(url, key, shared=False):  # the server ends the dead session's locks
            assert time.monotonic() < deadline, "the killed holder's lock outlived it"
            time.sleep(0.1)  # a poll interval, bounded by the deadline


def test_readers_share_and_keep_writers_out(tmp_path: Path, database: str) -> None:
    url = _url(database)
    locks = locks_for(tmp_path, {LOCK_URL_VARIABLE: url})
    assert isinstance(locks, PostgresLocks)
    with _holder(tmp_path, "shared", url):
        assert _try(url, locks.key("transactions"), shared=True)  # another reader
        assert not _try(url, locks.key("transactions"), shared=False)  # a writer waits
        assert not _try(url, locks.key("balances"), shared=False)
        assert _try(url, locks.key("external_accounts"), shared=False)  # a table nobody reads


def test_a_lake_has_one_name_wherever_it_is_mounted(tmp_path: Path) -> None:
    """Machines mount a shared lake at paths of their own: the lock keys come from the lake's id."""
    (tmp_path / "lake").mkdir()
    (tmp_path / "mount").symlink_to(tmp_path / "lake")
    url = "postgresql://unused"
    here, there = (
        PostgresLocks(url, lake_id(tmp_path / "lake")),
        PostgresLocks(url, lake_id(tmp_path / "mount")),
    )
    assert here.key("transactions") == there.key("transactions") != here.key("balances")
    other = PostgresLocks(url, lake_id(tmp_path / "other"))
    assert other.key("transactions") != here.key("transactions")


def test_without_a_lock_url_the_lake_locks_files_and_a_bad_one_is_named(tmp_path: Path) -> None:
    assert isinstance(locks_for(tmp_path, {}), FileLocks)
    with pytest.raises(ValueError, match=f"{LOCK_URL_VARIABLE} must be a postgresql:// URL"):
        locks_for(tmp_path, {LOCK_URL_VARIABLE: "redis://127.0.0.1"})
    secret = "s3cr3t-password"
    locks = locks_for(tmp_path, {LOCK_URL_VARIABLE: f"postgresql://u:{secret}@127.0.0.1:1/x"})
    with pytest.raises(RuntimeError) as failed, locks.exclusive("t"):
        pass
    assert LOCK_URL_VARIABLE in str(failed.value) and secret not in str(failed.value)
    # libpq quotes back a URL it cannot parse, password included: not through us.
    garbled = locks_for(tmp_path, {LOCK_URL_VARIABLE: f"postgresql://u:%zz{secret}@127.0.0.1:1/x"})
    with pytest.raises(RuntimeError, match="not a valid URL") as failed, garbled.shared(["t"]):
        pass
    assert secret not in str(failed.value)


def test_a_lake_locked_in_postgresql_refuses_a_process_that_would_lock_it_with_files(tmp_path: Path) -> None:
    """An flock does not exclude writers holding advisory locks: such a process would lock nothing."""
    assert isinstance(locks_for(tmp_path, {}), FileLocks)
    assert isinstance(locks_for(tmp_path, {LOCK_URL_VARIABLE: "postgresql://unused"}), PostgresLocks)
    with pytest.raises(RuntimeError, match=f"locked through PostgreSQL .* set {LOCK_URL_VARIABLE}"):
        locks_for(tmp_path, {})


WAITER = """
import sys
from pathlib import Path
from pipelines.lake import Lake
try:
    print("waiting", flush=True)
    with Lake(Path(sys.argv[1])).lock("transactions"):
        print("taken", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def _lock_sessions(url: str, select: str) -> list[tuple[object, ...]]:
    """``select`` over the lake's lock sessions in ``url``'s database (``pg_stat_activity`` as ``s``)."""
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"{select} FROM pg_stat_activity AS s "
                "WHERE application_name = 'synctera-lake-lock' AND datname = current_database()"
            )
            return list(cursor.fetchall())
    finally:
        connection.close()


def _until_a_session_waits_for_a_lock(url: str) -> None:
    """Polls the server until one of the lake's lock sessions is blocked on a lock."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _lock_sessions(url, "SELECT count(*) FILTER (WHERE s.wait_event_type = 'Lock')") != [(0,)]:
            return
        time.sleep(0.05)  # a poll interval, bounded by the deadline
    raise AssertionError("no session came to wait for the lock")


def test_a_run_waiting_for_a_lock_stops_when_it_is_terminated(tmp_path: Path, database: str) -> None:
    """An operator terminates a run that waits behind another's publish (Dagster raises the
    termination in the run as a signal's interrupt; Ctrl-C is the same): it stops while the other
    still holds the lock, instead of when the lock is free."""
    url = _url(database)
    with _holder(tmp_path, "exclusive", url) as holder:
        env = {**os.environ, LOCK_URL_VARIABLE: url}
        with subprocess.Popen(
            [sys.executable, "-c", WAITER, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True
        ) as waiter:
            assert waiter.stdout is not None
            assert waiter.stdout.readline().strip() == "waiting"
            _until_a_session_waits_for_a_lock(url)
            waiter.send_signal(signal.SIGINT)
            try:
                output, _ = waiter.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                waiter.kill()
                raise AssertionError("still waiting for the lock 30 s after the interrupt") from None
            assert output.strip() == "interrupted"
            assert holder.poll() is None  # the lock was never free: the holder still runs


def test_a_run_that_loses_its_lock_mid_publish_writes_nothing_more(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ends the lock's session (a restart, a network cut): another run may take the lock
    at once, so the run that held it stops before its next partition, naming the lock."""
    url = _url(database)
    monkeypatch.setenv(LOCK_URL_VARIABLE, url)
    lake = Lake(tmp_path)
    with lake.lock("transactions"):
        lake.replace_partition("transactions", DAY, _rows(DAY, 4))  # held: written
        assert _lock_sessions(url, "SELECT pg_terminate_backend(s.pid)") == [(True,)]
        with pytest.raises(LockLostError, match="'transactions' lock was lost"):
            lake.replace_partition("transactions", DAY, _rows(DAY, 9))
    assert lake.read_partition("transactions", DAY).num_rows == 4
