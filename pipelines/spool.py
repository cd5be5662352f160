"""A run's rows spilled to disk by blocks of days, so memory does not grow with the run.

A backfill of thousands of accounts over a year is millions of rows; the partitions can only be
written once every account has been fetched (a partition holds all accounts of its day). Rows are
therefore appended, window by window, to one Parquet file per block of days under the lake's
staging directory, and read back one block at a time for the partition writes. The buffer in
memory is bounded by ``buffer_rows``; a block read back is a few days of rows.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lake import ALIVE, hold

MAX_BLOCKS = 128
"""Open spool files at most (one per block): a long backfill gets longer blocks, not more files."""


class DateSpool:
    """Rows with a ``date`` in ``[start, end)``, spooled to ``directory`` in blocks of days."""

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
        self._buffers: dict[int, list[pa.Table]] = {}
        self._buffered = 0
        self._writers: dict[int, pq.ParquetWriter] = {}

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
        ordinals = table.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False)
        offsets = ordinals - (self.start - dt.date(1970, 1, 1)).days
        if offsets.min() < 0 or offsets.max() >= (self.end - self.start).days:
            raise ValueError(f"spool: rows dated outside {self.start}..{self.end}")
        blocks = offsets // self.block_days
        present = np.unique(blocks).tolist()
        for block in present:
            part = table if len(present) == 1 else table.filter(pa.array(blocks == block))
            self._buffers.setdefault(block, []).append(part)
        self._buffered += table.num_rows
        self.rows += table.num_rows
        if self._buffered >= self.buffer_rows:
            self._flush()

    def _flush(self) -> None:
        for block, parts in self._buffers.items():
            writer = self._writers.get(block)
            if writer is None:
                path = self.directory / f"block-{block:05d}.parquet"
                writer = self._writers[block] = pq.ParquetWriter(path, self.schema, compression="lz4")
            writer.write_table(pa.concat_tables(parts))
        self._buffers.clear()
        self._buffered = 0

    def blocks(self) -> Iterator[tuple[list[dt.date], pa.Table]]:
        """Every block's days (all of them, with rows or not) and its rows, oldest first."""
        self._flush()
        for writer in self._writers.values():
            writer.close()
        paths = {block: writer.where for block, writer in self._writers.items()}
        self._writers.clear()
        for block in range(self.blocks_count):
            first = self.start + dt.timedelta(days=block * self.block_days)
            days = [
                first + dt.timedelta(days=n)
                for n in range(self.block_days)
                if first + dt.timedelta(days=n) < self.end
            ]
            path = paths.get(block)
            rows = pq.read_table(path, schema=self.schema) if path else self.schema.empty_table()
            yield days, rows

    def discard(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        self._buffers.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._alive >= 0:
            os.close(self._alive)
            self._alive = -1
