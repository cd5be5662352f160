"""Checked transactions of many windows, gathered by day until there are enough for one Arrow table.

A window is a few hundred rows over a few days; turning each into its own table and cutting that by
day cost Arrow a fixed few hundred microseconds a window, as much again as the rows themselves. Here
the rows wait as they are (a few thousand at most, a few MiB) and leave as one table in date order,
which the spool cuts by day without a sort.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable, Sequence

import pyarrow as pa

from pipelines.records import WindowRows, window_rows_table
from pipelines.synctera.rows import ROW_DATE, Transaction


class DayBuffer:
    """Rows by day; every ``rows`` rows (and on ``flush``) they go to ``sink`` as one table."""

    def __init__(self, sink: Callable[[pa.Table], None], *, run_id: str, rows: int = 4096) -> None:
        self.sink = sink
        self.run_id = run_id
        self.limit = rows
        self._days: dict[dt.date, list[WindowRows]] = {}
        self._rows = 0

    def add(self, account_id: str, fetched_at: dt.datetime, rows: Sequence[Transaction]) -> None:
        """Keep one window's rows, which must be in date order (each with a date)."""
        begin = 0
        while begin < len(rows):
            day = rows[begin].date
            assert day is not None  # checked when the window came back
            end = bisect.bisect_right(rows, day, lo=begin, key=ROW_DATE)
            self._days.setdefault(day, []).append(WindowRows(account_id, fetched_at, rows[begin:end]))
            begin = end
        self._rows += len(rows)
        if self._rows >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Hand what is kept to the sink, in date order."""
        if not self._rows:
            return
        parts = [part for day in sorted(self._days) for part in self._days[day]]
        self._days.clear()
        self._rows = 0
        self.sink(window_rows_table(parts, run_id=self.run_id))
