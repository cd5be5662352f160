"""A transactions run's sealed work, shared between its steps (perhaps on several machines) through
the lake's ``.shards/<root run id>/``: the listing the run splits (``freeze_accounts``) and each
shard's fetch (``ShardFetch``: its spooled rows, its windows, its figures). Everything is on disk
before the file that marks it whole is renamed into place, and is checked when read back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pipelines.lake import Lake
from pipelines.shards import Shard
from pipelines.spool import SpoolDamagedError, fsync
from pipelines.synctera import StatsSnapshot


class ShardMismatchError(RuntimeError):
    """The shards handed to ``publish`` are not one run's complete split of the listing."""


WINDOWS_FILE = "windows.arrow"
FIGURES_FILE = "shard.json"


@dataclass(frozen=True)
class ShardFetch:
    """One shard's fetch, sealed in ``directory`` for the publish step (perhaps on another machine):
    its spooled rows, its windows (the ledger's rows) and these figures."""

    directory: Path
    shard: Shard
    start: dt.date
    end: dt.date  # exclusive
    snapshot_day: dt.date
    accounts: tuple[str, ...]
    accounts_with_prior_density: int
    rows: int
    calls: int
    windows_split: int
    duplicates_dropped: int
    flagged: tuple[tuple[dt.date, str], ...]  # (day, account) that returned the cap alone
    rows_by_day: Mapping[dt.date, int]
    accounts_by_day: Mapping[dt.date, int]
    windows_complete_by_day: Mapping[dt.date, int]
    stats: StatsSnapshot
    block_rows: Mapping[int, int]  # rows in each block file of the spool (checked when read back)
    block_bytes: Mapping[int, int]  # and each file's size
    began_at: float  # epoch seconds: when the shard's fetch began
    cpu_seconds: float  # the shard's fetch, in its own process
    wall_seconds: float

    def save(self, windows: pa.Table) -> None:
        """Write the figures and the windows beside the sealed rows (the figures last: their file
        marks the shard as complete)."""
        with (
            pa.OSFile(str(self.directory / WINDOWS_FILE), "wb") as sink,
            pa.ipc.new_file(sink, windows.schema) as writer,
        ):
            writer.write_table(windows)
        fsync(self.directory / WINDOWS_FILE)
        figures = {
            "shard": [self.shard.index, self.shard.count],
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "snapshot_day": self.snapshot_day.isoformat(),
            "accounts": list(self.accounts),
            "accounts_with_prior_density": self.accounts_with_prior_density,
            "rows": self.rows,
            "calls": self.calls,
            "windows_split": self.windows_split,
            "duplicates_dropped": self.duplicates_dropped,
            "flagged": [[d.isoformat(), a] for d, a in self.flagged],
            "rows_by_day": {d.isoformat(): n for d, n in self.rows_by_day.items()},
            "accounts_by_day": {d.isoformat(): n for d, n in self.accounts_by_day.items()},
            "windows_complete_by_day": {d.isoformat(): n for d, n in self.windows_complete_by_day.items()},
            "stats": dataclasses.asdict(self.stats),
            "block_rows": {str(block): rows for block, rows in self.block_rows.items()},
            "block_bytes": {str(block): size for block, size in self.block_bytes.items()},
            "began_at": self.began_at,
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
        }
        pending = self.directory / f"{FIGURES_FILE}.pending"
        pending.write_text(json.dumps(figures))
        fsync(pending)
        pending.replace(self.directory / FIGURES_FILE)  # the shard is whole from here on
        fsync(self.directory)

    @classmethod
    def load(cls, directory: Path) -> ShardFetch:
        try:
            figures = json.loads((directory / FIGURES_FILE).read_text())
        except FileNotFoundError:
            raise ShardMismatchError(
                f"{directory} holds no sealed shard (its fetch did not finish)"
            ) from None

        def by_day(counts: dict[str, int]) -> dict[dt.date, int]:
            return {dt.date.fromisoformat(d): n for d, n in counts.items()}

        return cls(
            directory=directory,
            shard=Shard(*figures["shard"]),
            start=dt.date.fromisoformat(figures["start"]),
            end=dt.date.fromisoformat(figures["end"]),
            snapshot_day=dt.date.fromisoformat(figures["snapshot_day"]),
            accounts=tuple(figures["accounts"]),
            accounts_with_prior_density=figures["accounts_with_prior_density"],
            rows=figures["rows"],
            calls=figures["calls"],
            windows_split=figures["windows_split"],
            duplicates_dropped=figures["duplicates_dropped"],
            flagged=tuple((dt.date.fromisoformat(d), a) for d, a in figures["flagged"]),
            rows_by_day=by_day(figures["rows_by_day"]),
            accounts_by_day=by_day(figures["accounts_by_day"]),
            windows_complete_by_day=by_day(figures["windows_complete_by_day"]),
            stats=StatsSnapshot(**figures["stats"]),
            block_rows={int(block): rows for block, rows in figures["block_rows"].items()},
            block_bytes={int(block): size for block, size in figures["block_bytes"].items()},
            began_at=figures["began_at"],
            cpu_seconds=figures["cpu_seconds"],
            wall_seconds=figures["wall_seconds"],
        )

    def windows(self) -> pa.Table:
        with pa.memory_map(str(self.directory / WINDOWS_FILE)) as source:
            windows = pa.ipc.open_file(source).read_all()
        if windows.num_rows != self.calls:
            raise SpoolDamagedError(f"{self.directory}: {windows.num_rows} windows, its seal {self.calls}")
        return windows


ACCOUNTS_FILE = "accounts.json"


def shard_dir(lake: Lake, run_key: str, shard: Shard) -> Path:
    """Where ``shard`` of the run ``run_key`` (its root run id) is sealed."""
    return lake.run_dir(run_key) / f"transactions-{shard.name}"


def sealed_shard(lake: Lake, run_key: str, shard: Shard) -> ShardFetch:
    """``shard``'s seal of the run ``run_key``, from whichever machine sealed it last."""
    directory = shard_dir(lake, run_key, shard)
    lake.retrieve(directory, mark=FIGURES_FILE)
    return ShardFetch.load(directory)


def freeze_accounts(lake: Lake, run_key: str, account_ids: list[str], snapshot_day: dt.date) -> None:
    """The listing a run's shards all split, taken once: a listing taken while they run is not theirs."""
    directory = lake.run_dir(run_key)
    directory.mkdir(parents=True, exist_ok=True)
    pending = directory / f"{ACCOUNTS_FILE}.pending"
    pending.write_text(json.dumps({"snapshot_day": snapshot_day.isoformat(), "account_ids": account_ids}))
    pending.replace(directory / ACCOUNTS_FILE)
    lake.share(directory / ACCOUNTS_FILE)


def frozen_accounts(lake: Lake, run_key: str) -> tuple[list[str], dt.date]:
    """``freeze_accounts``' listing of the run ``run_key``."""
    path = lake.run_dir(run_key) / ACCOUNTS_FILE
    lake.retrieve(path)
    try:
        frozen = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardMismatchError(f"{path} is missing: the run's listing step did not finish") from None
    return list(frozen["account_ids"]), dt.date.fromisoformat(frozen["snapshot_day"])
