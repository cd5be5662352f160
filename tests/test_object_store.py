"""The lake on an S3-compatible object store (moto's server on loopback, a bucket per test): a
partition is replaced whole, a failed write leaves the old one, staging never reaches the bucket,
and an analyst's own DuckDB reads the lake from a directory and a warehouse file of their own."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from pipelines import warehouse
from pipelines.lake import Lake, lake_from_env
from pipelines.locks import LOCK_URL_VARIABLE, LockServiceError
from pipelines.object_store import ObjectStore
from pipelines.settings import REPO_ROOT, ConfigError

from .services import PG, database
from .test_lake import _rows

pytestmark = pytest.mark.scale_out
__all__ = ["database"]  # fixtures of services, used here

DAY = dt.date(2024, 3, 1)


@pytest.fixture
def lake(bucket: str, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A lake in this test's bucket, locked through this test's PostgreSQL database."""
    url = f"postgresql://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{database}"
    monkeypatch.setenv(LOCK_URL_VARIABLE, url)
    return Lake(tmp_path / "work", ObjectStore.parse(f"{bucket}/lake"))


def _keys(lake: Lake) -> list[str]:
    assert lake.store is not None
    return sorted(lake.store.files(""))


def test_a_partition_is_replaced_whole_and_a_failed_upload_leaves_the_old_one(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.replace_partition("transactions", DAY, _rows(DAY, 5))
    uri = lake.replace_partition("transactions", DAY, _rows(DAY, 2))
    assert uri == f"{lake.location}/transactions/date={DAY}/part-0.parquet"
    assert lake.read_partition("transactions", DAY).num_rows == 2

    # The connection drops during the upload (a fault at s3fs's transport: the staged file is whole).
    def dropped(local: str, key: str, **_: object) -> None:
        raise ConnectionResetError(f"upload of {key} cut")

    assert lake.store is not None
    monkeypatch.setattr(lake.store.fs, "put_file", dropped)
    with pytest.raises(ConnectionResetError, match="cut"):
        lake.replace_partition("transactions", DAY, _rows(DAY, 9))
    monkeypatch.undo()
    assert lake.read_partition("transactions", DAY).num_rows == 2
    assert lake.partitions("transactions") == [DAY]
    # Staging stays on the local disk, and is cleared: the bucket holds the partition alone.
    assert _keys(lake) == [f"transactions/date={DAY}/part-0.parquet"]
    assert list(lake.staging_dir.iterdir()) == []


def test_replacing_some_accounts_keeps_the_others_rows(lake: Lake) -> None:
    other = _rows(DAY, 2, account="other")
    lake.replace_accounts(
        "transactions", [DAY], pa.concat_tables([_rows(DAY, 3), other]), accounts=["acc", "other"]
    )
    lake.replace_accounts("transactions", [DAY], _rows(DAY, 1), accounts=["acc"])
    held = lake.read_partition("transactions", DAY)
    assert sorted(held.column("account_id").to_pylist()) == ["acc", "other", "other"]


def test_an_analysts_duckdb_reads_the_lake_from_a_directory_of_their_own(lake: Lake, tmp_path: Path) -> None:
    for n, day in enumerate([DAY, DAY + dt.timedelta(days=1)]):
        lake.replace_partition("transactions", day, _rows(day, 3 + n))
    built = warehouse.refresh_views(lake)
    assert built == (tmp_path / "work" / warehouse.WAREHOUSE).resolve()
    connection = warehouse.connect(lake.root, store=lake.store)
    try:
        assert connection.execute("SELECT count(*), count(DISTINCT date) FROM transactions").fetchone() == (
            7,
            2,
        )
        assert connection.execute("SELECT count(*) FROM balances").fetchone() == (0,)  # typed, empty
    finally:
        connection.close()

    # Elsewhere, with only the bucket's URL and their AWS settings: one command builds their file.
    analyst = tmp_path / "analyst"
    analyst.mkdir()
    env = {k: v for k, v in os.environ.items() if k != LOCK_URL_VARIABLE}  # an analyst has no lock service
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.warehouse", lake.location, "--into", "mine"],
        cwd=analyst,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (analyst / "mine" / warehouse.WAREHOUSE).is_file()
    assert (
        os.environ["AWS_SECRET_ACCESS_KEY"].encode()
        not in (analyst / "mine" / warehouse.WAREHOUSE).read_bytes()
    )
    connection = warehouse.connect(analyst / "mine", store=lake.store)
    try:
        assert connection.execute("SELECT sum(amount) FROM transactions").fetchone() == (
            sum(_rows(DAY, 3).column("amount").to_pylist()) + sum(_rows(DAY, 4).column("amount").to_pylist()),
        )
    finally:
        connection.close()


def test_an_object_store_lake_needs_the_lock_service_and_says_so(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LOCK_URL_VARIABLE, raising=False)
    lake = Lake(tmp_path, ObjectStore.parse(f"{bucket}/lake"))
    with pytest.raises(LockServiceError, match=LOCK_URL_VARIABLE), lake.lock("transactions"):
        pass


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("s3://Bad_Bucket/lake", "not an S3 bucket name"),  # S3 bucket names are lower case
        ("s3://bucket/lake[1]", "glob"),  # DuckDB would read the views' paths as globs
        ("S3://bucket/lake", "S3:// is not supported"),  # not a directory named "S3:"
        ("s3a://bucket/lake", "s3a:// is not supported"),
        ("s3://AKIAEXAMPLE:hunter2@bucket/lake", "credentials do not go in the URL"),
    ],
)
def test_a_bad_object_store_url_is_refused_naming_the_setting(location: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"SYNCTERA_DATA_DIR: .*{problem}") as refused:
        lake_from_env({"SYNCTERA_DATA_DIR": location})
    assert "hunter2" not in str(refused.value)


def test_an_object_store_lakes_work_directory_is_its_own_setting(tmp_path: Path) -> None:
    lake = lake_from_env({"SYNCTERA_DATA_DIR": "s3://bucket/a/b/", "SYNCTERA_WORK_DIR": str(tmp_path)})
    assert lake.root == tmp_path and lake.location == "s3://bucket/a/b"
    assert lake_from_env({"SYNCTERA_DATA_DIR": "s3://bucket"}).root == REPO_ROOT / "data"


def test_a_seal_shared_again_replaces_the_earlier_attempts_files_whole(lake: Lake, tmp_path: Path) -> None:
    """A shard fetched twice (a worker killed, its step run again): the second attempt's seal, as
    another machine retrieves it, holds none of the first's files."""
    sealed = lake.run_dir("run-1") / "transactions-shard-0-of-2"
    sealed.mkdir(parents=True)
    for name, text in [("block-1", "a"), ("block-5", "b"), ("shard.json", "first")]:
        (sealed / name).write_text(text)
    lake.share(sealed, last="shard.json")
    (sealed / "block-5").unlink()
    (sealed / "shard.json").write_text("second")
    lake.share(sealed, last="shard.json")

    elsewhere = Lake(tmp_path / "other-machine", lake.store)
    copy = elsewhere.run_dir("run-1") / "transactions-shard-0-of-2"
    copy.mkdir(parents=True)
    (copy / "shard.json").write_text("first")  # its own stale copy of the first attempt
    elsewhere.retrieve(copy, mark="shard.json")
    assert {p.name: p.read_text() for p in copy.iterdir()} == {"block-1": "a", "shard.json": "second"}
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # nothing half-downloaded left

    elsewhere.remove_run_dir(copy.parent)
    assert lake.store is not None and lake.store.files(".shards") == {}


def test_a_long_lived_reader_sees_what_other_machines_wrote_since(lake: Lake) -> None:
    """A worker or a notebook keeps one process: partitions another machine adds or replaces later
    are read as they are now, not as a cached listing had them."""
    lake.replace_partition("transactions", DAY, _rows(DAY, 2))
    connection = lake.duckdb()
    warehouse.create_views(connection, lake)
    assert connection.execute("SELECT count(*) FROM transactions").fetchone() == (2,)
    later = DAY + dt.timedelta(days=1)
    other_machine = s3fs.S3FileSystem(skip_instance_cache=True)  # a client of its own, as elsewhere
    for day, rows in [(DAY, 5), (later, 1)]:
        staged = lake.root / f"elsewhere-{day}.parquet"
        pq.write_table(_rows(day, rows), staged)
        other_machine.put_file(str(staged), lake.partition_uri("transactions", day))
    assert lake.partitions("transactions") == [DAY, later]
    assert connection.execute("SELECT count(*) FROM transactions").fetchone() == (6,)
    connection.close()
    with warehouse.reading(lake) as fresh:  # the report's and make run's reader: no file needed here
        assert not (lake.root / warehouse.WAREHOUSE).exists()
        assert fresh.execute("SELECT count(*) FROM transactions").fetchone() == (6,)
