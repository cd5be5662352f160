"""A run's rows spilled to disk by blocks of days, so memory does not grow with the run.

A backfill of thousands of accounts over a year is millions of rows; the partitions can only be
written once every account has been fetched (a partition holds all accounts of its day). Rows are
therefore buffered window by window and flushed, by blocks of days, to Arrow IPC files under the
lake's staging directory, then read back one block at a time for the partition writes. The buffer in
memory is bounded by ``buffer_rows``; a block read back is a few days of rows.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from pipelines.lake import ALIVE, hold_new, split_by_date, spool_prefix

BUFFER_ROWS = 25_000
"""Rows held in memory before a flush to disk."""

# Single-threaded: a spool stream is a few hundred rows, for which Arrow's thread pool costs more
# than the work (reading a block back took 2.5 times the CPU with threads).
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)
IPC_READ_OPTIONS = pa.ipc.IpcReadOptions(use_threads=False)

MAX_BLOCKS = 366
"""Spool files at most (one per block). Up to a year a block is one day, so the write phase holds
one day's rows (a year of 2,000 accounts peaked at 345 MiB instead of 366 with 3-day blocks, in
``bench.memory_trace``, for the same CPU); a longer backfill gets longer blocks, not more files."""


class DateSpool:
    """Rows with a ``date`` in ``[start, end)``, spooled to ``directory`` in blocks of days.

    Each table added is cut by day on the way in (zero-copy slices of a table of one window); a
    flush appends to the file of each block it touches one Arrow IPC stream (lz4) of that block's
    rows in date order, copying one block at a time, never the whole buffer. Reading a block back
    reads its one file. No writer stays open between flushes, so nothing accumulates in memory as the
    run goes on.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        start: dt.date,
        end: dt.date,
        *,
        buffer_rows: int = BUFFER_ROWS,
    ) -> None:
        self.schema = schema
        self.start, self.end = start, end
        self.block_days = block_days(start, end)
        self.buffer_rows = buffer_rows
        self.rows = 0
        self.directory = directory / f"{spool_prefix()}{uuid.uuid4().hex}"
        self.directory.mkdir(parents=True)
        self._alive = hold_new(self.directory / ALIVE)  # tells clear_staging this spool is in use
        self._sealed = False
        self.block_rows: dict[int, int] = {}  # rows flushed to each block's file
        self.block_bytes: dict[int, int] = {}  # and its size, once sealed
        self._buffer: dict[dt.date, list[pa.Table]] = {}  # each day's slices, in arrival order
        self._buffered = 0

    def __enter__(self) -> DateSpool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.discard()

    def add(self, table: pa.Table) -> None:
        """Keep ``table``'s rows (each dated inside the spool's range) until ``blocks()`` reads them."""
        if table.num_rows == 0:
            return
        if not table.schema.equals(self.schema):
            raise TypeError(f"spool: schema mismatch\n{table.schema}\n!=\n{self.schema}")
        days = list(split_by_date(table))
        if days[0][0] < self.start or days[-1][0] >= self.end:
            raise ValueError(f"spool: rows dated outside {self.start}..{self.end}")
        for day, rows in days:
            self._buffer.setdefault(day, []).append(rows)
        self._buffered += table.num_rows
        self.rows += table.num_rows
        if self._buffered >= self.buffer_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        by_block: dict[int, list[pa.Table]] = {}
        for day in sorted(self._buffer):
            by_block.setdefault((day - self.start).days // self.block_days, []).extend(self._buffer[day])
        self._buffer.clear()
        self._buffered = 0
        for block, parts in by_block.items():
            # One Arrow IPC stream per flush, appended to the block's file; nothing stays open.
            with (
                pa.OSFile(str(self._block_file(block)), "ab") as sink,
                pa.ipc.new_stream(sink, self.schema, options=IPC_OPTIONS) as writer,
            ):
                rows = pa.concat_tables(parts).combine_chunks()
                writer.write_table(rows)
            self.block_rows[block] = self.block_rows.get(block, 0) + rows.num_rows
        # No release here: the next windows reuse the freed memory, and handing it back to the
        # system on every flush cost 10% of a year-long run's CPU (in page faults) for 6 MiB.

    def _block_file(self, block: int) -> Path:
        return self.directory / _block_name(block)

    def blocks(self) -> Iterator[tuple[list[dt.date], pa.Table]]:
        """Every block's days (all of them, with rows or not) and its rows, oldest first."""
        self._flush()
        sizes = {block: self._block_file(block).stat().st_size for block in self.block_rows}
        return sealed_blocks([(self.directory, self.block_rows, sizes)], self.schema, self.start, self.end)

    def seal(self, target: Path) -> None:
        """Keep the rows at ``target`` for a step that reads them later, perhaps on another machine
        (``sealed_blocks``): flushed, then the directory renamed there, replacing what an earlier
        attempt left. The spool is then no longer removed on exit."""
        self._flush()
        for block in self.block_rows:  # on disk before anything says the shard is whole
            fsync(self._block_file(block))
            self.block_bytes[block] = self._block_file(block).stat().st_size
        (self.directory / ALIVE).unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # an earlier attempt's: out of the way, then gone
            stale = target.with_name(f"{target.name}.stale-{uuid.uuid4().hex}")
            os.rename(target, stale)
            shutil.rmtree(stale)
        os.rename(self.directory, target)
        fsync(target.parent)
        self.directory, self._sealed = target, True
        self._release()

    def discard(self) -> None:
        self._buffer.clear()
        if not self._sealed:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._alive >= 0:
            os.close(self._alive)
            self._alive = -1


def block_days(start: dt.date, end: dt.date) -> int:
    """Days per block of a spool over ``[start, end)``: one up to ``MAX_BLOCKS`` days."""
    return max(1, math.ceil((end - start).days / MAX_BLOCKS))


def fsync(path: Path) -> None:
    """``path`` (a file, or a directory: its entries) on disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SpoolDamagedError(RuntimeError):
    """A sealed spool does not hold what its seal recorded: never publish it as if it were empty."""


def _block_name(block: int) -> str:
    return f"block-{block:05d}.arrows"


def sealed_blocks(
    spools: list[tuple[Path, Mapping[int, int], Mapping[int, int]]],
    schema: pa.Schema,
    start: dt.date,
    end: dt.date,
) -> Iterator[tuple[list[dt.date], pa.Table]]:
    """Every block's days (all of them, with rows or not) and its rows from all of ``spools`` (each a
    directory, the rows its blocks hold and their sizes in bytes, e.g. one per shard, over the same
    range), oldest first. A block file that is missing, of another size or holding other than its
    recorded rows raises ``SpoolDamagedError`` (sizes before the first block is read, so nothing is
    published from a damaged spool): read as empty, it would erase those accounts' rows."""
    for directory, rows, sizes in spools:
        for block in rows:
            path = directory / _block_name(block)
            found = path.stat().st_size if path.exists() else None
            if found != sizes.get(block):
                raise SpoolDamagedError(
                    f"{path} is {found} bytes, its seal {sizes.get(block)}: fetch that shard again"
                )
    return _blocks(spools, schema, start, end)


def _blocks(
    spools: list[tuple[Path, Mapping[int, int], Mapping[int, int]]],
    schema: pa.Schema,
    start: dt.date,
    end: dt.date,
) -> Iterator[tuple[list[dt.date], pa.Table]]:
    per_block = block_days(start, end)
    for block in range(math.ceil((end - start).days / per_block)):
        first = start + dt.timedelta(days=block * per_block)
        last = min(first + dt.timedelta(days=per_block), end)
        days = [first + dt.timedelta(days=n) for n in range((last - first).days)]
        parts = []
        for directory, recorded, _ in spools:
            part = _read(directory / _block_name(block), schema, per_block)
            if part.num_rows != recorded.get(block, 0):
                raise SpoolDamagedError(
                    f"{directory / _block_name(block)} holds {part.num_rows} rows, its seal "
                    f"{recorded.get(block, 0)}: fetch that shard again"
                )
            parts.append(part)
        rows = [p for p in parts if p.num_rows]
        if len(rows) > 1 and per_block > 1:  # each part in date order, not their concatenation
            yield days, pa.concat_tables(rows).sort_by([("date", "ascending")])
        else:
            yield days, pa.concat_tables(rows) if rows else schema.empty_table()


def _read(path: Path, schema: pa.Schema, per_block: int) -> pa.Table:
    """The block's rows in date order, without a sort: each flush appended one stream, sorted by
    date, so the block is its streams' slices gathered day by day (zero-copy). The write phase
    thus holds one copy of a block, not two."""
    if not path.exists():
        return schema.empty_table()
    streams = []
    with pa.memory_map(str(path)) as source:
        while source.tell() < source.size():
            streams.append(pa.ipc.open_stream(source, options=IPC_READ_OPTIONS).read_all())
    if per_block == 1:  # every stream holds the one day: already in date order
        return pa.concat_tables(streams) if streams else schema.empty_table()
    by_day: dict[dt.date, list[pa.Table]] = {}
    for stream in streams:
        for day, rows in split_by_date(stream):
            by_day.setdefault(day, []).append(rows)
    if not by_day:
        return schema.empty_table()
    return pa.concat_tables([rows for day in sorted(by_day) for rows in by_day[day]])
