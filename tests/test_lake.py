"""The lake and the warehouse on real files: schemas, atomic partition replacement, views."""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import lake as lake_module
from pipelines import warehouse
from pipelines.ingest.listing import latest_accounts, take_listing
from pipelines.lake import Lake, split_by_date
from pipelines.records import transactions_table
from pipelines.sandbox import RunningSandbox
from pipelines.synctera import AsyncSyncteraClient
from pipelines.synctera.rows import decode_transaction_batch

DAY = dt.date(2026, 3, 1)
NOW = dt.datetime(2026, 3, 2, 3, 0, tzinfo=dt.UTC)


def _rows(day: dt.date, n: int, *, amount: int = 100, account: str = "acc") -> pa.Table:
    body = ",".join(
        f'{{"transaction_id": "t{i}", "date": "{day}", "amount": {amount + i}, "new_field": {i}}}'
        for i in range(n)
    )
    transactions = decode_transaction_batch(f'{{"transactions": [{body}]}}'.encode()).transactions
    return transactions_table(account, transactions, fetched_at=NOW, run_id="run-1")


def test_unknown_api_fields_are_kept_and_amounts_stay_int64(tmp_path: Path) -> None:
    table = _rows(DAY, 2, amount=2**40)
    assert table.schema.field("amount").type == pa.int64()
    assert table.column("extra").to_pylist() == ['{"new_field": 0}', '{"new_field": 1}']
    path = Lake(tmp_path).replace_partition("transactions", DAY, table)
    assert pq.read_table(path).column("amount").to_pylist() == [2**40, 2**40 + 1]


def test_replacing_a_partition_swaps_the_whole_file(tmp_path: Path) -> None:
    store = Lake(tmp_path)
    store.replace_partition("transactions", DAY, _rows(DAY, 5))
    store.replace_partition("transactions", DAY, _rows(DAY, 2))
    assert pq.read_table(store.partition_file("transactions", DAY)).num_rows == 2
    assert [p.name for p in (tmp_path / "transactions").rglob("*.parquet")] == [lake_module.PART]


def test_a_failed_write_leaves_the_old_partition_and_no_visible_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Lake(tmp_path)
    store.replace_partition("transactions", DAY, _rows(DAY, 3))

    def crash(table: pa.Table, where: Path, **_: object) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(lake_module.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.replace_partition("transactions", DAY, _rows(DAY, 9))
    monkeypatch.undo()
    assert pq.read_table(store.partition_file("transactions", DAY)).num_rows == 3
    assert list((tmp_path / "transactions").rglob("*")) == [
        store.partition_file("transactions", DAY).parent,
        store.partition_file("transactions", DAY),
    ]
    assert list((tmp_path / ".staging").iterdir()) == []


def test_rows_of_another_date_or_schema_are_refused(tmp_path: Path) -> None:
    store = Lake(tmp_path)
    with pytest.raises(ValueError, match="other dates"):
        store.replace_partition("transactions", DAY, _rows(DAY + dt.timedelta(days=1), 1))
    with pytest.raises(TypeError, match="schema mismatch"):
        store.replace_partition("transactions", DAY, _rows(DAY, 1).drop_columns(["extra"]))


def test_views_answer_from_any_directory_and_exist_before_any_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Lake(tmp_path / "data")
    warehouse.refresh_views(store)
    connection = warehouse.connect(store.root)
    try:
        assert connection.execute("SELECT count(*) FROM balances").fetchone() == (0,)
        types = dict(
            connection.execute("SELECT column_name, column_type FROM (DESCRIBE balances)").fetchall()
        )
    finally:
        connection.close()
    assert types["current"] == "BIGINT"
    assert types["observed_at"] == "TIMESTAMP WITH TIME ZONE"

    store.replace_partition("transactions", DAY, _rows(DAY, 4))
    warehouse.refresh_views(store)
    monkeypatch.chdir(tmp_path / "data")  # anywhere but the data directory's parent
    connection = warehouse.connect(store.root)
    try:
        assert connection.execute("SELECT count(*), sum(amount) FROM transactions").fetchone() == (4, 406)
    finally:
        connection.close()


def _every_view_answers_in_the_duckdb_cli(warehouse_file: Path, cwd: Path) -> dict[str, int]:
    """Row counts of every view, through the DuckDB command-line client (duckdb-cli 1.5, an older
    line than the library that wrote the file), run from ``cwd``."""
    cli = Path(sys.executable).parent / "duckdb"
    assert cli.exists(), "the DuckDB CLI (dev dependency duckdb-cli) is installed beside python"
    sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in lake_module.TABLES)  # noqa: S608
    finished = subprocess.run(
        [str(cli), "-readonly", "-csv", "-noheader", str(warehouse_file), "-c", sql],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    return {name: int(count) for name, count in csv.reader(finished.stdout.splitlines())}


@pytest.mark.parametrize("relative", [False, True])
def test_the_warehouse_opens_from_any_directory_and_any_duckdb_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    import duckdb

    (tmp_path / "srv").mkdir()
    monkeypatch.chdir(tmp_path / "srv")
    root = Path("synctera") if relative else tmp_path / "srv" / "synctera"  # relative: to the working dir
    store = Lake(root)
    store.replace_partition("transactions", DAY, _rows(DAY, 2))
    warehouse.refresh_views(store)
    elsewhere = tmp_path / "home" / "notebooks"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    file = tmp_path / "srv" / "synctera" / warehouse.WAREHOUSE
    connection = duckdb.connect(str(file), read_only=True)  # plain duckdb, not our connect()
    try:
        for table in lake_module.TABLES:
            connection.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        assert connection.execute("SELECT count(*) FROM transactions").fetchone() == (2,)
    finally:
        connection.close()
    counts = _every_view_answers_in_the_duckdb_cli(file, elsewhere)
    assert counts == {"external_accounts": 0, "balances": 0, "transactions": 2, "transaction_windows": 0}


def test_a_moved_data_directory_is_made_right_by_one_command(tmp_path: Path) -> None:
    store = Lake(tmp_path / "old" / "data")
    store.replace_partition("transactions", DAY, _rows(DAY, 3))
    warehouse.refresh_views(store)
    moved = tmp_path / "new" / "data"
    moved.parent.mkdir()
    store.root.rename(moved)
    with pytest.raises(duckdb.IOException, match="No files found"):
        _count_transactions(moved)  # the views still name the old place
    finished = subprocess.run(
        [sys.executable, "-m", "pipelines.warehouse", str(moved)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert _count_transactions(moved) == 3
    assert _every_view_answers_in_the_duckdb_cli(moved / warehouse.WAREHOUSE, tmp_path)["transactions"] == 3


def _count_transactions(data_dir: Path) -> int:
    connection = warehouse.connect(data_dir)
    try:
        (count,) = connection.execute("SELECT count(*) FROM transactions").fetchone() or (0,)
        return int(count)
    finally:
        connection.close()


def test_a_data_directory_duckdb_would_read_as_a_glob_is_refused_naming_it(tmp_path: Path) -> None:
    store = Lake(tmp_path / "data[1]")
    store.replace_partition("transactions", DAY, _rows(DAY, 1))
    with pytest.raises(warehouse.WarehousePathError, match=r"data\[1\].*SYNCTERA_DATA_DIR"):
        warehouse.refresh_views(store)


def test_an_analyst_holding_the_warehouse_open_does_not_block_a_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    monkeypatch.chdir(tmp_path)
    store = Lake(tmp_path / "data")
    store.replace_partition("transactions", DAY, _rows(DAY, 2))
    warehouse.refresh_views(store)
    analyst = duckdb.connect(str(store.root / warehouse.WAREHOUSE))  # read-write, as the CLI opens it
    try:
        store.replace_partition(
            "transactions", DAY + dt.timedelta(days=1), _rows(DAY + dt.timedelta(days=1), 3)
        )
        warehouse.refresh_views(store)
        assert analyst.execute("SELECT count(*) FROM transactions").fetchone() is not None
    finally:
        analyst.close()
    fresh = warehouse.connect(store.root)
    try:
        assert fresh.execute("SELECT count(*) FROM transactions").fetchone() == (5,)
    finally:
        fresh.close()


def test_replacing_some_accounts_keeps_the_others_rows(tmp_path: Path) -> None:
    """A re-fetch covers only the accounts it fetched; a balance run crossing midnight covers only
    the accounts it observed that day: nobody else's rows are lost."""
    store = Lake(tmp_path)
    first = _rows(DAY, 3)
    other = transactions_table(
        "other",
        decode_transaction_batch(
            f'{{"transactions": [{{"transaction_id": "o", "date": "{DAY}"}}]}}'.encode()
        ).transactions,
        fetched_at=NOW,
        run_id="r",
    )
    store.replace_accounts("transactions", [DAY], pa.concat_tables([first, other]), accounts=["acc", "other"])
    store.replace_accounts("transactions", [DAY], _rows(DAY, 1), accounts=["acc"])
    rows = pq.read_table(store.partition_file("transactions", DAY)).select(["account_id", "transaction_id"])
    assert sorted(zip(*rows.to_pydict().values(), strict=True)) == [("acc", "t0"), ("other", "o")]


@pytest.mark.parametrize("in_date_order", [False, True])  # True: the path without a sort
def test_rows_split_by_date_land_each_in_its_own_day_whatever_the_chunking(in_date_order: bool) -> None:
    rng = random.Random(1)
    for _ in range(100):
        count = rng.randint(1, 300)
        dates = [DAY + dt.timedelta(days=rng.randint(0, 20)) for _ in range(count)]
        if in_date_order:
            dates.sort()
        chunks, start = [], 0
        while start < count:
            size = rng.randint(1, 50)
            part = dates[start : start + size]
            chunks.append(
                pa.table({"date": pa.array(part, pa.date32()), "n": list(range(start, start + len(part)))})
            )
            start += size
        groups = list(split_by_date(pa.concat_tables(chunks)))
        assert [day for day, _ in groups] == sorted(set(dates))
        assert all(set(rows.column("date").to_pylist()) == {day} for day, rows in groups)
        assert sorted(n for _, rows in groups for n in rows.column("n").to_pylist()) == list(range(count))


def test_rows_without_a_date_or_outside_the_days_replaced_are_refused(tmp_path: Path) -> None:
    store = Lake(tmp_path)
    dated = pa.table({"date": pa.array([DAY, None, DAY], pa.date32())})
    with pytest.raises(ValueError, match="1 rows have no date"):
        list(split_by_date(dated))
    next_day = DAY + dt.timedelta(days=1)
    with pytest.raises(ValueError, match=f"rows dated {next_day}, outside the days replaced"):
        store.replace_accounts("transactions", [DAY], _rows(next_day, 2), accounts=["acc"])
    assert not store.partition_file("transactions", DAY).exists()  # refused before anything was written


def test_the_uniqueness_check_counts_a_key_written_twice_within_a_block(tmp_path: Path) -> None:
    from pipelines.ingest.transactions import duplicate_keys as _duplicate_keys

    store = Lake(tmp_path)
    first = store.replace_partition("transactions", DAY, _rows(DAY, 3))
    next_day = DAY + dt.timedelta(days=1)
    second = store.replace_partition("transactions", next_day, _rows(next_day, 2))  # t0, t1 again
    assert _duplicate_keys(store, [[first], [second]]) == 0  # each block alone is clean
    assert _duplicate_keys(store, [[first, second]]) == 2
    # The key is the pair: another account's t0 and t1 on the same day are not duplicates.
    both = store.replace_partition(
        "transactions", DAY, pa.concat_tables([_rows(DAY, 3), _rows(DAY, 2, account="b")])
    )
    assert _duplicate_keys(store, [[both]]) == 0
    assert _duplicate_keys(store, [[both, second]]) == 2


def test_a_runs_own_duckdb_reads_are_bounded_and_spill_into_a_directory_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # DuckDB's own default would spill into .tmp here
    store = Lake(tmp_path / "data")
    store.replace_partition("transactions", DAY, _rows(DAY, 3))
    with store.reader_config("32MiB") as config:
        connection = store.duckdb(config)
        limit, threads, spill = connection.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('temp_directory')"
        ).fetchall()[0]
        # A group-by far larger than the limit completes by spilling to the run's own directory.
        groups = connection.execute(
            "SELECT count(*) FROM (SELECT md5(i::VARCHAR) AS h, count(*) FROM range(3000000) t(i) GROUP BY h)"
        ).fetchall()[0][0]
        connection.close()
        assert Path(spill).parent == store.staging_dir  # the lake's disk, swept by clear_staging
    assert (limit, threads, groups) == ("32.0 MiB", 1, 3_000_000)
    assert not Path(spill).exists()
    assert not (tmp_path / ".tmp").exists()
    warehouse.refresh_views(store)
    with store.reader_config() as config, warehouse.reading(store, config) as reader:
        assert reader.execute(
            "SELECT current_setting('memory_limit'), count(*) FROM transactions"
        ).fetchall() == [("64.0 MiB", 3)]


def test_a_read_that_outgrows_its_memory_limit_is_read_again_under_the_next(tmp_path: Path) -> None:
    store = Lake(tmp_path)
    tried: list[str] = []

    def sort(config: dict[str, str]) -> int:
        tried.append(config["memory_limit"])
        connection = store.duckdb(config)
        try:  # a sort's runs need more than a few MiB pinned at once, even when spilling
            query = "SELECT count(*) FROM (SELECT md5(i::VARCHAR) AS h FROM range(2000000) t(i) ORDER BY h)"
            return int(connection.execute(query).fetchall()[0][0])
        finally:
            connection.close()

    assert store.read_bounded(sort, limits=("4MiB", "64MiB")) == 2_000_000
    assert tried == ["4MiB", "64MiB"]


_REPLACER = """
import datetime as dt, sys
from pathlib import Path
import pyarrow as pa
from pipelines.lake import TRANSACTION_WINDOWS, Lake
lake = Lake(Path(sys.argv[1]))
now = dt.datetime.now(dt.UTC)
for round in range(int(sys.argv[2])):
    with lake.lock("transactions"):  # as publish does: the ledger goes with the transactions
        for n in range(6):
            day = dt.date(2026, 3, 1) + dt.timedelta(days=n)
            rows = [
                {"account_id": f"a{i}", "date": day, "start_date": day,
                 "end_date": day + dt.timedelta(days=1), "row_count": round + i, "complete": True,
                 "outcome": "complete", "attempts": 1, "fetched_at": now, "run_id": str(round)}
                for i in range(100 + 37 * ((round + n) % 11))  # sizes vary: offsets move
            ]
            table = pa.Table.from_pylist(rows, schema=TRANSACTION_WINDOWS)
            lake.replace_partition("transaction_windows", day, table)
"""


def test_the_pipelines_readers_never_read_a_partition_while_it_is_replaced(tmp_path: Path) -> None:
    """DuckDB re-opens a multi-file scan's files mid-query, so one that spans a rename over a file
    fails ("TProtocolException: Invalid data"); the ledger reads under a shared lock instead."""
    from pipelines import ledger

    store = Lake(tmp_path)
    assert subprocess.run([sys.executable, "-c", _REPLACER, str(tmp_path), "1"], check=False).returncode == 0
    replacer = subprocess.Popen([sys.executable, "-c", _REPLACER, str(tmp_path), "150"])
    reads = 0
    try:
        while replacer.poll() is None:
            rates = ledger.prior_rates(store, around=DAY)
            assert len(rates) >= 100
            reads += 1
    finally:
        replacer.kill()
        replacer.wait()
    assert replacer.returncode == 0
    assert reads >= 20, f"only {reads} reads overlapped the replacements"


def test_the_run_reads_the_accounts_snapshot_while_no_writer_can_replace_it(
    tmp_path: Path, start_sandbox: Callable[..., RunningSandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In an object store a read that spans a replacement fails (its ranged GETs carry the old ETag):
    a second machine listing the same day must wait until the snapshot has been read."""
    server = start_sandbox(accounts=5)
    lake = Lake(tmp_path / "data")

    def client() -> AsyncSyncteraClient:
        return AsyncSyncteraClient(base_url=server.base_url, api_key=server.api_key)

    listing = take_listing(client, lake, include_history=False, run_id="listing", emit=lambda _: None)
    writer_could_lock: list[bool] = []
    read = Lake.read_partition

    def watched(self: Lake, table: str, day: dt.date, **options: Any) -> pa.Table:
        if table == "external_accounts":  # would a writer get the table's lock now?
            with open(lake.root / ".locks" / "external_accounts.lock", "a") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    writer_could_lock.append(True)
                except BlockingIOError:
                    writer_could_lock.append(False)
        return read(self, table, day, **options)

    monkeypatch.setattr(Lake, "read_partition", watched)
    account_ids, _ = latest_accounts(lake)
    assert len(account_ids) == listing.accounts > 0
    assert writer_could_lock == [False]


_FREED_THEN_READ = """
import sys
from pathlib import Path
import duckdb  # what the read imports is not counted against what it hands back
from pipelines.lake import Lake

def rss_mib():
    status = open("/proc/self/status").read()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024

blocks = [bytearray(2048) for _ in range(200_000)]  # the C heap (over pymalloc's 512 bytes), 400 MiB
kept = blocks[::10]  # one block in ten stays, so the heap's top cannot shrink on its own
del blocks
before = rss_mib()
Lake(Path(sys.argv[1])).read_bounded(lambda config: None)
print(before - rss_mib())
"""


def test_a_bounded_read_hands_memory_already_freed_back_to_the_system(tmp_path: Path) -> None:
    """The run's last steps are bounded reads (the uniqueness check, the reconciliation, the report):
    each would otherwise stack its working memory on the free heap of the step before (at M, ~20 MiB
    of the run's peak). glibc keeps freed blocks resident until ``malloc_trim``."""
    done = subprocess.run(
        [sys.executable, "-c", _FREED_THEN_READ, str(tmp_path)], capture_output=True, text=True, check=True
    )
    returned_mib = float(done.stdout)
    assert returned_mib > 150, f"only {returned_mib:.0f} MiB of 360 freed went back"
