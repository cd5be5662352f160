"""Shards of the account book, fetched apart (as Celery workers do) and published at once, against
the sandbox over real HTTP: the same warehouse as one fetch, a missing shard refused by name, and a
shard fetched twice (a worker killed, its step run again) written once."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.ingest.listing import latest_accounts, take_listing
from pipelines.ingest.seals import ShardFetch, ShardMismatchError, shard_dir
from pipelines.ingest.transactions import fetch_shard, publish
from pipelines.lake import Lake
from pipelines.sandbox import RunningSandbox
from pipelines.shards import Shard, all_shards, shard_of
from pipelines.spool import SpoolDamagedError

from .conftest import assert_warehouse_matches, client_of, ingest_on, warehouse_facts

ONE_DAY = dt.timedelta(days=1)


def _quiet(_: str) -> None:
    pass


def test_an_account_keeps_its_shard_in_any_order_and_any_process() -> None:
    ids = [f"acc-{n}" for n in range(200)] + ["7d0f1c2e-aaaa-4bbb-8ccc-000000000001", "ÅÄÖ", ""]
    shuffled = random.Random(3).sample(ids, len(ids))
    shards = all_shards(4)
    split = [set(s.accounts(shuffled)) for s in shards]
    assert set().union(*split) == set(ids) and sum(map(len, split)) == len(ids)  # a partition
    assert [set(s.accounts(ids)) for s in shards] == split
    assert all(len(part) > 20 for part in split), [len(p) for p in split]
    # Python's own hash() differs between processes; a shard must not.
    script = "import sys; from pipelines.shards import shard_of; print(shard_of(sys.argv[1], 4))"
    other = subprocess.run(
        [sys.executable, "-c", script, "acc-17"], capture_output=True, text=True, check=True
    )
    assert int(other.stdout) == shard_of("acc-17", 4)
    with pytest.raises(ValueError, match="no shard 4 of 4"):
        Shard(4, 4)


@pytest.fixture
def listed(
    start_sandbox: Callable[..., RunningSandbox], tmp_path: Path
) -> tuple[RunningSandbox, Callable[[str], Lake]]:
    server = start_sandbox(accounts=14, history_days=40)

    def lake(name: str) -> Lake:
        store = Lake(tmp_path / name)
        take_listing(client_of(server), store, include_history=False, run_id="listing", emit=_quiet)
        return store

    return server, lake


def _fetch(server: RunningSandbox, lake: Lake, shard: Shard, start: dt.date, end: dt.date) -> ShardFetch:
    account_ids, snapshot_day = latest_accounts(lake)
    return fetch_shard(
        client_of(server),
        lake,
        start=start,
        end=end,
        account_ids=account_ids,
        snapshot_day=snapshot_day,
        shard=shard,
        target=shard_dir(lake, "run-1", shard),
        concurrency=4,
        run_id="run-1",
        emit=_quiet,
    )


def test_shards_fetched_apart_publish_the_warehouse_of_one_fetch(
    listed: tuple[RunningSandbox, Callable[[str], Lake]],
) -> None:
    server, make_lake = listed
    end = server.sandbox.today - ONE_DAY
    start = end - 30 * ONE_DAY
    whole, sharded = make_lake("whole"), make_lake("sharded")
    account_ids, snapshot_day = latest_accounts(whole)
    ingest_on(server, whole, start, end, run_id="run-0")
    # The last shard first: the order shards finish in is not the order they are published in.
    fetches = [_fetch(server, sharded, shard, start, end) for shard in reversed(all_shards(3))]
    assert sorted(len(f.accounts) for f in fetches) != [0, 0, len(account_ids)], "the accounts were split"
    summary = publish(
        sharded,
        [ShardFetch.load(f.directory) for f in fetches],
        account_ids=account_ids,
        snapshot_day=snapshot_day,
        emit=_quiet,
    )

    assert summary.duplicate_keys == 0 and summary.accounts == len(account_ids)
    assert summary.rows == sum(f.rows for f in fetches) and summary.calls == sum(f.calls for f in fetches)
    assert summary.stats.total_requests == sum(f.stats.total_requests for f in fetches)
    # The same rows of every day not flagged, the same days proven and flagged (a flagged day keeps
    # the 500 rows one call returned, which another call need not repeat).
    sharded_rows, sharded_proven, sharded_flagged = warehouse_facts(sharded.root)
    assert (sharded_rows, sharded_proven, sharded_flagged) == warehouse_facts(whole.root) and sharded_rows
    assert_warehouse_matches(server.sandbox, sharded.root, start, end - ONE_DAY)
    assert not (sharded.root / ".shards" / "run-1").exists(), "published shards are removed"


def test_an_incomplete_or_wrong_split_is_refused_naming_shards_and_accounts(
    listed: tuple[RunningSandbox, Callable[[str], Lake]],
) -> None:
    server, make_lake = listed
    end = server.sandbox.today - ONE_DAY
    start = end - 10 * ONE_DAY
    lake = make_lake("data")
    account_ids, day = latest_accounts(lake)
    fetched = [_fetch(server, lake, shard, start, end) for shard in all_shards(3)[:2]]
    with pytest.raises(ShardMismatchError, match="not one split") as refused:
        publish(lake, fetched, account_ids=account_ids, snapshot_day=day, emit=_quiet)
    assert "shard 1 of 3" in str(refused.value) and "shard 2 of 3" in str(refused.value)
    # A listing with accounts no shard fetched: they are named.
    lone = _fetch(server, lake, Shard(0, 1), start, end)
    with pytest.raises(ShardMismatchError, match="2 accounts of the snapshot are in no shard: new-1, new-2"):
        publish(lake, [lone], account_ids=[*account_ids, "new-1", "new-2"], snapshot_day=day, emit=_quiet)
    # An account a shard fetched that the listing no longer has: named too (it would keep old rows).
    with pytest.raises(
        ShardMismatchError, match=f"did not fetch exactly its accounts of the listing: {account_ids[0]}"
    ):
        publish(lake, [lone], account_ids=account_ids[1:], snapshot_day=day, emit=_quiet)
    with pytest.raises(ShardMismatchError, match="not one split"):
        publish(lake, [lone], account_ids=account_ids, snapshot_day=day - ONE_DAY, emit=_quiet)
    assert lake.partitions("transactions") == []


def test_a_damaged_seal_is_refused_never_published_as_empty(
    listed: tuple[RunningSandbox, Callable[[str], Lake]],
) -> None:
    """A block lost after its shard was sealed (a crash, a second attempt's seal replacing the first
    under a publish): read as empty it would erase its accounts' rows from the partitions."""
    server, make_lake = listed
    end = server.sandbox.today - ONE_DAY
    start = end - 10 * ONE_DAY
    lake = make_lake("data")
    account_ids, day = latest_accounts(lake)
    fetched = [_fetch(server, lake, shard, start, end) for shard in all_shards(2)]
    block = next(b for b, rows in sorted(fetched[1].block_rows.items()) if rows)
    (fetched[1].directory / f"block-{block:05d}.arrows").write_bytes(b"")
    with pytest.raises(SpoolDamagedError, match=f"block-{block:05d}.arrows is 0 bytes, its seal"):
        publish(
            lake,
            [ShardFetch.load(f.directory) for f in fetched],
            account_ids=account_ids,
            snapshot_day=day,
            emit=_quiet,
        )
    assert lake.partitions("transactions") == [], "refused before any partition was written"


def test_a_shard_fetched_twice_is_published_once(
    listed: tuple[RunningSandbox, Callable[[str], Lake]],
) -> None:
    """A worker killed mid-shard gives its step back to the broker and another worker runs it again:
    the second seal replaces the first, and the publish writes each row once."""
    server, make_lake = listed
    end = server.sandbox.today - ONE_DAY
    start = end - 20 * ONE_DAY
    lake = make_lake("data")
    account_ids, day = latest_accounts(lake)
    first = _fetch(server, lake, Shard(0, 2), start, end)
    again = _fetch(server, lake, Shard(0, 2), start, end)
    other = _fetch(server, lake, Shard(1, 2), start, end)
    assert again.directory == first.directory and again.rows == first.rows
    summary = publish(
        lake,
        [ShardFetch.load(again.directory), other],
        account_ids=account_ids,
        snapshot_day=day,
        emit=_quiet,
    )
    assert summary.duplicate_keys == 0 and summary.rows == first.rows + other.rows
    assert_warehouse_matches(server.sandbox, lake.root, start, end - ONE_DAY)


def test_an_old_run_re_executed_never_overwrites_a_later_runs_days(
    listed: tuple[RunningSandbox, Callable[[str], Lake]],
) -> None:
    """Shards sealed by a run that failed in publish, re-executed after a later run published the
    same days: they would put back what the API said then, over later postings. Refused, by name."""
    server, make_lake = listed
    end = server.sandbox.today - ONE_DAY
    start = end - 10 * ONE_DAY
    lake = make_lake("data")
    account_ids, day = latest_accounts(lake)
    old = _fetch(server, lake, Shard(0, 1), start, end)
    ingest_on(server, lake, start, end, run_id="later")
    before = warehouse_facts(lake.root)
    with pytest.raises(ShardMismatchError, match="a later run published days of"):
        publish(lake, [old], account_ids=account_ids, snapshot_day=day, emit=_quiet)
    assert warehouse_facts(lake.root) == before
