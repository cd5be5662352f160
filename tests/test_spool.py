"""The run's spool: rows spilled by blocks of days come back exactly, and a dead spool is cleared."""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.lake import TRANSACTIONS, Lake, days_between, spool_prefix
from pipelines.spool import MAX_BLOCKS, DateSpool

NOW = dt.datetime(2026, 3, 2, 3, 0, tzinfo=dt.UTC)
START = dt.date(2025, 1, 1)


def _table(days: list[dt.date], prefix: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"account_id": "a", "transaction_id": f"{prefix}{i}", "date": d, "fetched_at": NOW, "run_id": "r"}
            for i, d in enumerate(days)
        ],
        schema=TRANSACTIONS,
    )


@pytest.mark.parametrize("total_days", [1, 90, 365, 1500])
@pytest.mark.parametrize("in_date_order", [False, True])  # True: as the asset adds them
def test_every_row_comes_back_once_in_date_order_in_its_block(
    tmp_path: Path, total_days: int, in_date_order: bool
) -> None:
    end = START + dt.timedelta(days=total_days)
    rng = random.Random(total_days)
    sent: list[tuple[str, dt.date]] = []
    with DateSpool(tmp_path, TRANSACTIONS, START, end, buffer_rows=300) as spool:
        for batch in range(40):
            days = [START + dt.timedelta(days=rng.randrange(total_days)) for _ in range(rng.randrange(0, 60))]
            if in_date_order:
                days.sort()
            table = _table(days, f"b{batch}-")
            spool.add(table)
            sent += list(zip(table.column("transaction_id").to_pylist(), days, strict=True))
        covered: list[dt.date] = []
        back: list[tuple[str, dt.date]] = []
        for block_days, rows in spool.blocks():
            assert rows.schema.equals(TRANSACTIONS)
            dates = rows.column("date").to_pylist()
            assert all(d in block_days for d in dates)
            assert dates == sorted(dates)  # in date order, so the partition writes need no sort
            covered += block_days
            back += list(
                zip(rows.column("transaction_id").to_pylist(), rows.column("date").to_pylist(), strict=True)
            )
        assert spool.rows == len(sent)
    assert covered == days_between(START, end)  # every day once, in order, rows or not
    assert len(covered) // spool.block_days <= MAX_BLOCKS
    assert sorted(back) == sorted(sent)
    assert not list(tmp_path.iterdir())  # the spool removes itself


def test_rows_outside_the_range_or_of_another_schema_are_refused(tmp_path: Path) -> None:
    with DateSpool(tmp_path, TRANSACTIONS, START, START + dt.timedelta(days=7)) as spool:
        with pytest.raises(ValueError, match="outside"):
            spool.add(_table([START + dt.timedelta(days=7)], "x"))
        with pytest.raises(ValueError, match="outside"):
            spool.add(_table([START + dt.timedelta(days=3), START - dt.timedelta(days=1)], "x"))
        with pytest.raises(ValueError, match="no date"):
            spool.add(_table([START, None, START], "x"))  # type: ignore[list-item]
        assert spool.rows == 0  # nothing refused was kept
        with pytest.raises(TypeError, match="schema"):
            spool.add(_table([START], "x").drop_columns(["extra"]))


def test_a_dead_spool_is_cleared_at_once_and_a_live_one_is_not(tmp_path: Path) -> None:
    """A cancelled or killed run's spool goes with the next run, however young; a live one stays."""
    lake = Lake(tmp_path)
    live = DateSpool(lake.staging_dir, TRANSACTIONS, START, START + dt.timedelta(days=3))
    assert [p.name for p in live.directory.iterdir()] == [".alive"], "the lock file appears already locked"
    dead = lake.staging_dir / f"{spool_prefix()}killed"
    dead.mkdir()
    (dead / ".alive").touch()  # its process died a moment ago, so nobody holds the lock
    (dead / "block-00000.arrows").write_bytes(b"partial")
    starting = lake.staging_dir / f"{spool_prefix()}starting"  # its lock file is not there yet
    starting.mkdir()
    abandoned = lake.staging_dir / f"{spool_prefix()}abandoned"  # the same, hours old: its process died
    abandoned.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(abandoned, (two_hours_ago, two_hours_ago))
    # Another machine's spools on a shared lake: their flock is not seen from here, so a free-looking
    # lock proves nothing; only age does.
    elsewhere = lake.staging_dir / "spool-another-host-7f3a"
    elsewhere.mkdir()
    (elsewhere / ".alive").touch()
    forgotten = lake.staging_dir / "spool-another-host-0c1d"
    forgotten.mkdir()
    eight_days_ago = time.time() - 8 * 86400
    os.utime(forgotten, (eight_days_ago, eight_days_ago))
    assert lake.clear_staging() == 3
    assert live.directory.is_dir() and starting.is_dir() and elsewhere.is_dir()
    assert not dead.exists() and not abandoned.exists() and not forgotten.exists()
    live.discard()
    assert not live.directory.exists()
