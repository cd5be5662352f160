"""A run's rows spilled to disk by blocks of days, so memory does not grow with the run.

A backfill of thousands of accounts over a year is millions of rows; the partitions can only be
written once every account has been fetched (a partition holds all accounts of its day). Rows are
therefore buffered window by window and flushed, by blocks of days, to Arrow IPC files under the
lake's staging directory, then read back one block at a time for the partition writes. The buffer in
memory is bounded by ``buffer_rows``; a block read back is a few days of rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa

from pipelines.lake import ALIVE, hold

IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")

MAX_BLOCKS = 128
"""Open spool files at most (one per block): a long backfill gets longer blocks, not more files."""


class DateSpool:
    """Rows with a ``date`` in ``[start, end)``, spooled to ``directory`` in blocks of days.

    Each flush of the buffer sorts it by date and appends one Arrow IPC stream (lz4) to the file of
    each block it touches; reading a block back reads its one file. No writer stays open between
    flushes, so nothing accumulates in memory as the run goes on.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        start: dt.date,
        end: dt.date,
        *,
        buffer_rows: int = 100_000,
    ) -> None:
        self.schema = schema
        self.start, self.end = start, end
        total_days = (end - start).days
        self.block_days = max(1, math.ceil(total_days / MAX_BLOCKS))
        self.blocks_count = math.ceil(total_days / self.block_days)
        self.buffer_rows = buffer_rows
        self.rows = 0
        self.directory = directory / f"spool-{uuid.uuid4().hex}"
        self.directory.mkdir(parents=True)
        self._alive = hold(self.directory / ALIVE)  # tells clear_staging this spool is in use
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._epoch_offset = (start - dt.date(1970, 1, 1)).days

    def __enter__(self) -> DateSpool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.discard()

    def _offsets(self, table: pa.Table) -> np.ndarray:
        """Each row's day, counted from ``start``."""
        ordinals: np.ndarray = table.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False)
        return ordinals - self._epoch_offset

    def add(self, table: pa.Table) -> None:
        """Keep ``table``'s rows (each dated inside the spool's range) until ``blocks()`` reads them."""
        if table.num_rows == 0:
            return
        if not table.schema.equals(self.schema):
            raise TypeError(f"spool: schema mismatch\n{table.schema}\n!=\n{self.schema}")
        offsets = self._offsets(table)
        if offsets.min() < 0 or offsets.max() >= (self.end - self.start).days:
            raise ValueError(f"spool: rows dated outside {self.start}..{self.end}")
        self._buffer.append(table)
        self._buffered += table.num_rows
        self.rows += table.num_rows
        if self._buffered >= self.buffer_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        ordered = pa.concat_tables(self._buffer).sort_by([("date", "ascending")])
        self._buffer.clear()
        self._buffered = 0
        blocks = self._offsets(ordered) // self.block_days
        bounds = [0, *(np.flatnonzero(np.diff(blocks)) + 1).tolist(), len(blocks)]
        for begin, stop in itertools.pairwise(bounds):
            # One Arrow IPC stream per flush, appended to the block's file; nothing stays open.
            with (
                pa.OSFile(str(self._block_file(int(blocks[begin]))), "ab") as sink,
                pa.ipc.new_stream(sink, self.schema, options=IPC_OPTIONS) as writer,
            ):
                writer.write_table(ordered.slice(begin, stop - begin))

    def _block_file(self, block: int) -> Path:
        return self.directory / f"block-{block:05d}.arrows"

    def blocks(self) -> Iterator[tuple[list[dt.date], pa.Table]]:
        """Every block's days (all of them, with rows or not) and its rows, oldest first."""
        self._flush()
        for block in range(self.blocks_count):
            first = self.start + dt.timedelta(days=block * self.block_days)
            last = min(first + dt.timedelta(days=self.block_days), self.end)
            days = [first + dt.timedelta(days=n) for n in range((last - first).days)]
            yield days, self._read(self._block_file(block))

    def _read(self, path: Path) -> pa.Table:
        """The block's streams, one after the other (each flush appended one)."""
        if not path.exists():
            return self.schema.empty_table()
        parts = []
        with pa.memory_map(str(path)) as source:
            while source.tell() < source.size():
                parts.append(pa.ipc.open_stream(source).read_all())
        return pa.concat_tables(parts) if parts else self.schema.empty_table()

    def discard(self) -> None:
        self._buffer.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._alive >= 0:
            os.close(self._alive)
            self._alive = -1
