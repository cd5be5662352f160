"""The Parquet lake: explicit Arrow schemas and atomic replacement of whole date partitions.

Layout: ``<root>/<table>/date=YYYY-MM-DD/part-0.parquet``, one file per partition. A partition is
written to ``<root>/.staging`` first and then renamed over the old file, so a reader sees the old
partition or the new one, never a mix; a crash leaves the old one intact and only a staging file
behind, which no view reads and the next write clears.

On an object store (``pipelines.object_store``) the same layout lives under the store's prefix and
the staged file is uploaded over the partition's key instead of renamed; ``root`` is then the local
work directory: staging, spools, and the warehouse file.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import itertools
import logging
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.locks import confirm_held, hold, locks_for
from pipelines.memory import release_free_memory
from pipelines.object_store import ObjectStore
from pipelines.settings import data_dir_from_env, object_store_from_env

if TYPE_CHECKING:
    import duckdb

T = TypeVar("T")
log = logging.getLogger(__name__)

STAGING = ".staging"
SHARDS = ".shards"
READER_MEMORY = ("64MiB", "1GiB")
"""The memory limits a run's own DuckDB reads try in turn (``Lake.read_bounded``)."""
SHARD_RETENTION = dt.timedelta(days=7)
"""How long a run's sealed shards wait for their publish step (a re-execution from failure)."""
_RUN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")
PART = "part-0.parquet"
_PARTITION_KEY = re.compile(r"(?P<table>[a-z_]+)/date=(?P<day>\d{4}-\d{2}-\d{2})/" + re.escape(PART))
UTC_TS = pa.timestamp("us", tz="UTC")

TRANSACTIONS = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("amount", pa.int64()),
        pa.field("currency", pa.string()),
        pa.field("authorized_date", pa.date32()),
        pa.field("is_pending", pa.bool_()),
        pa.field("merchant_name", pa.string()),
        pa.field("category", pa.list_(pa.string())),
        pa.field("payment_channel", pa.string()),
        pa.field("payment_method", pa.string()),
        pa.field("transaction_type", pa.string()),
        pa.field("check_number", pa.string()),
        pa.field("extra", pa.string()),  # fields the API added after 0.153.0, as JSON
        pa.field("fetched_at", UTC_TS, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

_STRUCT_ROUTING = pa.struct(
    [
        ("bank_name", pa.string()),
        ("bank_countries", pa.list_(pa.string())),
        ("ach_routing_number", pa.string()),
        ("wire_routing_number", pa.string()),
        ("swift_code", pa.string()),
        ("eft_routing_number", pa.string()),
        ("eft_ca_routing_number", pa.string()),
    ]
)

EXTERNAL_ACCOUNTS = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("business_id", pa.string()),
        pa.field("status", pa.string()),
        pa.field("type", pa.string()),
        pa.field("currency", pa.string()),
        pa.field("name", pa.string()),
        pa.field("nickname", pa.string()),
        pa.field("account_owner_names", pa.list_(pa.string())),
        pa.field("account_identifiers", pa.struct([("number", pa.string()), ("iban", pa.string())])),
        pa.field("routing_identifiers", _STRUCT_ROUTING),
        pa.field(
            "verification",
            pa.struct(
                [
                    ("status", pa.string()),
                    ("vendor", pa.string()),
                    ("creation_time", UTC_TS),
                    ("last_updated_time", UTC_TS),
                ]
            ),
        ),
        pa.field(
            "vendor_data", pa.struct([("account_number_mask", pa.string()), ("institution_id", pa.string())])
        ),
        pa.field("vendor_info", pa.string()),  # free-form vendor payload, as JSON
        pa.field("metadata", pa.string()),  # user-supplied, as JSON
        pa.field("tenant", pa.string()),
        pa.field("creation_time", UTC_TS),
        pa.field("last_updated_time", UTC_TS),
        pa.field("deletion_time", UTC_TS),
        pa.field("extra", pa.string()),
        pa.field("date", pa.date32(), nullable=False),  # the UTC date the snapshot was taken
        pa.field("observed_at", UTC_TS, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

BALANCES = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),  # the UTC date it was observed on
        pa.field("observed_at", UTC_TS, nullable=False),
        pa.field("currency", pa.string()),
        pa.field("available", pa.int64()),
        pa.field("current", pa.int64()),
        pa.field("limit", pa.int64()),
        pa.field("creation_time", UTC_TS),
        pa.field("last_updated_time", UTC_TS),
        pa.field("last_updated_time_vendor", UTC_TS),
        pa.field("transactions_last_updated_time", UTC_TS),
        pa.field("max_age", pa.int64()),
        pa.field("error", pa.string()),  # why there is no balance; null when there is one
        pa.field("error_status", pa.int64()),
        pa.field("error_code", pa.string()),
        pa.field("extra", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

TRANSACTION_WINDOWS = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),  # = start_date, the partition
        pa.field("start_date", pa.date32(), nullable=False),
        pa.field("end_date", pa.date32(), nullable=False),  # exclusive, as the API takes it
        pa.field("row_count", pa.int64(), nullable=False),
        pa.field("complete", pa.bool_(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # complete | capped | flagged
        pa.field("attempts", pa.int64(), nullable=False),
        pa.field("fetched_at", UTC_TS, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "external_accounts": EXTERNAL_ACCOUNTS,
    "balances": BALANCES,
    "transactions": TRANSACTIONS,
    "transaction_windows": TRANSACTION_WINDOWS,
}


@dataclass(frozen=True)
class Lake:
    """The lake under ``root`` (the configured data directory), or in ``store`` with ``root`` the
    local work directory."""

    root: Path
    store: ObjectStore | None = None

    @property
    def location(self) -> str:
        """Where the partitions are, as a person or DuckDB names it."""
        return self.store.url if self.store else str(self.root)

    def table_dir(self, table: str) -> Path:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        return self.root / table

    @property
    def staging_dir(self) -> Path:
        """Work in progress (partitions being written, spools); no view reads it."""
        return self.root / STAGING

    def run_dir(self, run_key: str) -> Path:
        """Where a run's steps leave sealed work (shards) for its later steps, perhaps on other
        machines: ``run_key`` is the run's root id, which its re-executions share. No view reads it.
        With an object store it is a local copy: ``share`` and ``retrieve`` carry it across."""
        if not _RUN_KEY.fullmatch(run_key) or run_key in (".", ".."):
            raise ValueError(f"not a run key: {run_key!r}")
        return self.root / SHARDS / run_key

    def share(self, path: Path, *, last: str | None = None) -> None:
        """Make ``path`` (a file or directory under ``run_dir``) visible to every machine: upload it
        to the store, the file named ``last`` after all others (it marks the rest as whole). On a
        local lake every machine already sees it."""
        if self.store is None:
            return
        key = self._key(path)
        if path.is_file():
            self.store.upload(path, key)
            return
        # An earlier attempt's files go first (its mark first of all): a block it left that this
        # attempt has not would be read with this attempt's seal, and refused as damaged forever.
        if last:
            self.store.remove(f"{key}/{last}")
        self.store.remove(key)
        files = sorted(f for f in path.rglob("*") if f.is_file())
        for file in sorted(files, key=lambda f: f.name == last):
            self.store.upload(file, self._key(file))

    def retrieve(self, path: Path, *, mark: str | None = None) -> None:
        """The store's copy of ``path`` (a file or a directory under ``run_dir``), replacing any local
        one: another machine's attempt may have replaced what this one left here. A directory whose
        file ``mark`` reads the same here and in the store is that attempt's already: kept. A copy
        is downloaded beside ``path`` and renamed into place whole."""
        if self.store is None:
            return
        key = self._key(path)
        marked = bool(mark) and (path / str(mark)).is_file() and self.store.exists(f"{key}/{mark}")
        if marked and self.store.read_text(f"{key}/{mark}") == (path / str(mark)).read_text():
            return
        files = self.store.files(key)
        arriving = path.with_name(f"{path.name}.retrieving-{uuid.uuid4().hex}")
        try:
            if files:
                for file_key in files:
                    local = arriving / PurePosixPath(file_key).relative_to(key)
                    local.parent.mkdir(parents=True, exist_ok=True)
                    self.store.download(file_key, local)
            elif self.store.exists(key):
                path.parent.mkdir(parents=True, exist_ok=True)
                self.store.download(key, arriving)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            if arriving.exists():
                arriving.rename(path)
        finally:
            if arriving.is_dir():
                shutil.rmtree(arriving)
            else:
                arriving.unlink(missing_ok=True)

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def remove_run_dir(self, directory: Path) -> None:
        """A published run's sealed work; then any run's older than ``SHARD_RETENTION`` (runs that
        failed and were never re-executed)."""
        shutil.rmtree(directory, ignore_errors=True)
        self._sweep_local_runs()
        if self.store is None:
            return
        self.store.remove(self._key(directory))
        cutoff = dt.datetime.now(dt.UTC) - SHARD_RETENTION
        newest: dict[str, dt.datetime] = {}
        for key, modified in self.store.files(SHARDS).items():
            run_key = key.split("/")[1]
            if _RUN_KEY.fullmatch(run_key) and run_key not in (".", ".."):
                newest[run_key] = max(newest.get(run_key, modified), modified)
        for run_key, modified in newest.items():
            if modified < cutoff:
                self.store.remove(f"{SHARDS}/{run_key}")

    def _sweep_local_runs(self) -> None:
        """Local seals older than ``SHARD_RETENTION``: a machine's copies of runs that never published."""
        cutoff = dt.datetime.now().timestamp() - SHARD_RETENTION.total_seconds()
        runs = self.root / SHARDS
        for run in runs.iterdir() if runs.is_dir() else ():
            try:
                stale = run.stat().st_mtime < cutoff
            except FileNotFoundError:  # another publish swept it first
                continue
            if stale:
                shutil.rmtree(run, ignore_errors=True)

    def partition_file(self, table: str, day: dt.date) -> Path:
        """The partition's file in a local lake (see ``partition_uri`` for either kind)."""
        return self.table_dir(table) / f"date={day.isoformat()}" / PART

    def _partition_key(self, table: str, day: dt.date) -> str:
        self.table_dir(table)  # a known table
        return f"{table}/date={day.isoformat()}/{PART}"

    def partition_uri(self, table: str, day: dt.date) -> str:
        """The partition as DuckDB reads it: a local path, or an ``s3://`` URI."""
        if self.store is not None:
            return self.store.uri(self._partition_key(table, day))
        return str(self.partition_file(table, day))

    def read_partition(self, table: str, day: dt.date, *, columns: list[str] | None = None) -> pa.Table:
        schema = None if columns else TABLES[table]
        if self.store is not None:
            return self.store.read_table(self._partition_key(table, day), schema=schema, columns=columns)
        return pq.read_table(self.partition_file(table, day), schema=schema, columns=columns)

    def partition_rows(self, table: str, day: dt.date) -> int:
        """Rows the partition's file holds (from its footer)."""
        if self.store is not None:
            return self.store.num_rows(self._partition_key(table, day))
        return int(pq.ParquetFile(self.partition_file(table, day)).metadata.num_rows)

    def partitions(self, table: str) -> list[dt.date]:
        """Dates that have a partition file, oldest first."""
        if self.store is not None:
            self.table_dir(table)
            found = (_PARTITION_KEY.fullmatch(key) for key in self.store.files(table))
            return sorted(dt.date.fromisoformat(m["day"]) for m in found if m and m["table"] == table)
        directory = self.table_dir(table)
        if not directory.is_dir():
            return []
        days = []
        for child in directory.iterdir():
            if child.name.startswith("date=") and (child / PART).is_file():
                days.append(dt.date.fromisoformat(child.name.removeprefix("date=")))
        return sorted(days)

    def glob(self, table: str) -> str:
        if self.store is not None:
            self.table_dir(table)
            return self.store.uri(f"{table}/*/*.parquet")
        return str(self.table_dir(table) / "*" / "*.parquet")

    @contextmanager
    def reader_config(self, memory_limit: str = READER_MEMORY[0]) -> Iterator[dict[str, Any]]:
        """DuckDB settings for a run's own reads: one thread (the run has its own work) and at most
        ``memory_limit`` of DuckDB's buffers, spilling into staging (on the lake's disk, not a tmpfs
        ``/tmp``; a killed run's is swept by ``clear_staging``), removed afterwards. DuckDB's own
        default takes up to 80 % of the machine (at M the report's queries added 200 MiB) and spills
        an in-memory database into ``.tmp`` in the working directory."""
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="duckdb-", dir=self.staging_dir) as spill:
            yield {"threads": 1, "memory_limit": memory_limit, "temp_directory": spill}

    def read_bounded(self, work: Callable[[dict[str, Any]], T], limits: Sequence[str] = READER_MEMORY) -> T:
        """``work(config)`` with ``reader_config`` under each limit in turn, until one is enough: what
        DuckDB cannot spill (file metadata, window state) grows with the book, and a larger book
        must cost memory, not the run. Memory already freed goes back to the system before and after
        (one trim each): the run's last steps are reads, and each would stack its own working memory
        on the free heap the step before left (at M the run's peak fell from 444 to 423 MiB)."""
        import duckdb

        release_free_memory(collect=False)
        try:
            for limit in limits[:-1]:
                try:
                    with self.reader_config(limit) as config:
                        return work(config)
                except duckdb.OutOfMemoryException as exc:
                    log.warning("DuckDB needed more than %s (%s): reading again with more", limit, exc)
            with self.reader_config(limits[-1]) as config:
                return work(config)
        finally:
            release_free_memory(collect=False)

    def duckdb(self, config: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection that reads this lake's files wherever they are."""
        import duckdb

        connection = duckdb.connect(config=config or {})
        if self.store is not None:
            self.store.register(connection)
        return connection

    def replace_partition(self, table: str, day: dt.date, data: pa.Table) -> str:
        """Write ``data`` as the whole partition ``day`` of ``table``, atomically; its URI.

        ``data`` must match the table's schema exactly (types and nullability), so that every file
        of a table reads with one schema; an empty table writes an empty partition, which records
        that the day was fetched and had nothing.
        """
        schema = TABLES[table]
        if not data.schema.equals(schema):
            raise TypeError(f"{table} partition {day}: schema mismatch\n{data.schema}\n!=\n{schema}")
        dates = data.column("date")
        if data.num_rows and (dates.null_count or {d.as_py() for d in dates.unique()} != {day}):
            raise ValueError(f"{table} partition {day} holds rows of other dates")
        staging = self.staging_dir
        staging.mkdir(parents=True, exist_ok=True)
        temporary = staging / f"{table}-{day.isoformat()}-{uuid.uuid4().hex}.parquet"
        try:
            pq.write_table(data, temporary, compression="zstd")
            confirm_held()  # the table's lock, if its session died during the write
            if self.store is not None:
                self.store.upload(temporary, self._partition_key(table, day))
            else:
                with open(temporary, "rb") as handle:
                    os.fsync(handle.fileno())
                target = self.partition_file(table, day)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return self.partition_uri(table, day)

    def replace_accounts(
        self, table: str, days: Iterable[dt.date], data: pa.Table, *, accounts: Iterable[str]
    ) -> list[str]:
        """For each of ``days``, replace the rows of ``accounts`` with those of ``data`` dated that day.

        Rows of other accounts already in a partition are kept: an account this run did not fetch
        (deleted since, or missing from a listing) never loses what was ingested before. Each
        partition is still swapped whole and atomically. Call it under ``lock(table)``.
        """
        by_day = dict(split_by_date(data))
        days = list(days)
        if stray := sorted(set(by_day) - set(days)):
            raise ValueError(f"{table}: rows dated {', '.join(map(str, stray))}, outside the days replaced")
        schema = TABLES[table]
        covered = pa.array(sorted(set(accounts)), pa.string())
        # In a store, one listing for all the days instead of a request for each.
        listed = set(self.partitions(table)) if self.store is not None else None
        written = []
        for day in days:
            fresh = by_day.get(day, schema.empty_table())
            held = day in listed if listed is not None else self.partition_file(table, day).exists()
            if held:
                old = self.read_partition(table, day)
                kept = old.filter(pc.invert(pc.is_in(old.column("account_id"), value_set=covered)))
                fresh = pa.concat_tables([kept, fresh]) if kept.num_rows else fresh
            written.append(self.replace_partition(table, day, fresh))
        return written

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive across processes (and machines, with ``SYNCTERA_LOCK_URL``): concurrent runs
        write the same tables one after the other. It dies with its holder, so a killed run never
        leaves the lake locked (see ``pipelines.locks``)."""
        with locks_for(self.root, store=self.store).exclusive(name):
            yield

    @contextmanager
    def reading(self, *tables: str) -> Iterator[None]:
        """Shared locks on ``tables``: no run replaces their partitions while the body reads them.

        A DuckDB scan over several files re-opens them mid-query, so one that spans a replacement
        fails ("Invalid data"); the pipeline's own readers wait for a publish instead. Never call it
        while holding ``lock`` on one of ``tables`` (a process's own locks conflict too).
        """
        for table in tables:
            self.table_dir(table)  # a known table
        with locks_for(self.root, store=self.store).shared(tables):
            yield

    def clear_staging(self, older_than: dt.timedelta = dt.timedelta(hours=1)) -> int:
        """Remove what crashed or cancelled writers left in staging: every spool whose lock is free
        (its run is gone), and files old enough not to belong to a live writer. Old local seals too."""
        self._sweep_local_runs()
        staging = self.staging_dir
        if not staging.is_dir():
            return 0
        cutoff = dt.datetime.now().timestamp() - older_than.total_seconds()
        far_cutoff = dt.datetime.now().timestamp() - SHARD_RETENTION.total_seconds()
        removed = 0
        for leftover in staging.iterdir():
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
                removed += 1
            # A killed run's spool: its lock file exists and is free (the lock file appears already
            # locked, see hold_new). A directory without one is being created, unless it is old.
            # Another machine's spool (a lake shared by several): its flock is not seen from here,
            # so it is left to that machine, or removed once older than SHARD_RETENTION.
            elif leftover.is_dir():
                alive = leftover / ALIVE
                if not leftover.name.startswith(SPOOL_PREFIX):
                    stale = leftover.stat().st_mtime < cutoff
                elif not leftover.name.startswith(spool_prefix()):
                    stale = leftover.stat().st_mtime < far_cutoff
                else:
                    stale = (alive.exists() and not held(alive)) or (
                        not alive.exists() and leftover.stat().st_mtime < cutoff
                    )
                if stale:
                    shutil.rmtree(leftover, ignore_errors=True)
                    removed += 1
        return removed


ALIVE = ".alive"
"""A file a live writer holds an ``flock`` on, inside its staging directory."""


SPOOL_PREFIX = "spool-"


def spool_prefix() -> str:
    """``spool-<host hash>-``: this machine's spools, the ones whose ``flock`` it can see (a hash of
    fixed length, so that no host's prefix is another's: ``ingest`` and ``ingest-2``)."""
    host = hashlib.blake2b(socket.gethostname().encode(), digest_size=6).hexdigest()
    return f"{SPOOL_PREFIX}{host}-"


def hold_new(path: Path) -> int:
    """Create ``path`` already locked: the lock is taken on a file of another name, which is then
    renamed into place, so nobody ever sees ``path`` unlocked while its holder lives."""
    pending = path.with_name(f"{path.name}.{uuid.uuid4().hex}")
    descriptor = hold(pending)
    os.replace(pending, path)
    return descriptor


def held(path: Path) -> bool:
    """Whether a live process holds ``path`` (see ``hold``); a killed one's lock is gone."""
    try:
        descriptor = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def lake_from_env(env: Mapping[str, str] | None = None) -> Lake:
    """The lake ``SYNCTERA_DATA_DIR`` (and ``SYNCTERA_WORK_DIR``) name."""
    return Lake(data_dir_from_env(env), object_store_from_env(env))


def split_by_date(data: pa.Table) -> Iterator[tuple[dt.date, pa.Table]]:
    """The rows of ``data`` grouped by their ``date`` column: zero-copy slices, after a sort only if
    the rows are not already in date order (the spool's blocks are: no second copy of a block)."""
    if data.num_rows == 0:
        return
    if data.column("date").null_count:
        raise ValueError(f"{data.column('date').null_count} rows have no date")  # no day to put them in
    ordered = data
    ordinals = data.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False)
    if (np.diff(ordinals) < 0).any():
        ordered = data.sort_by([("date", "ascending")])
        ordinals = ordered.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False)
    days = ordered.column("date").combine_chunks()
    # Where the sorted dates change: the boundaries of each day's run of rows.
    bounds = [0, *(np.flatnonzero(np.diff(ordinals)) + 1).tolist(), len(ordinals)]
    for begin, stop in itertools.pairwise(bounds):
        yield days[begin].as_py(), ordered.slice(begin, stop - begin)


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day in ``[start, end)``."""
    return [start + dt.timedelta(days=n) for n in range((end - start).days)]
