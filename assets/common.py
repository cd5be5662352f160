"""What the assets share: the run's date range, the accounts snapshot, metadata helpers."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lake import Lake
from pipelines.synctera import StatsSnapshot

T = TypeVar("T")

SINGLE_RUN = dg.BackfillPolicy.single_run()
GROUP = "synctera"


class PartitionRangeError(ValueError):
    """The run asks for partitions the definition does not have (before its start, or not yet complete)."""


def run_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The run's partitions as dates ``[start, end)``: one day, or a whole backfill range.

    Dagster does not check a range given by tags against the definition, so it is checked here,
    before any call: every day must be a partition, and complete (nothing from today or later).
    """
    partitions_def = context.assets_def.partitions_def
    assert partitions_def is not None
    keys = context.partition_key_range
    valid = partitions_def.get_partition_keys()
    if not valid or keys.start not in valid or keys.end not in valid:
        span = f"{valid[0]}..{valid[-1]}" if valid else "none yet"
        raise PartitionRangeError(
            f"partitions {keys.start}..{keys.end} are outside the definition (complete UTC days {span})"
        )
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def is_current(context: dg.AssetExecutionContext) -> bool:
    """Whether the run reaches the newest partition (yesterday): only then is "now" part of it."""
    partitions_def = context.assets_def.partitions_def
    assert partitions_def is not None
    return bool(context.partition_key_range.end == partitions_def.get_last_partition_key())


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def latest_accounts(lake: Lake) -> tuple[list[str], dt.date]:
    """Account ids of the newest ``external_accounts`` snapshot, and the date it was taken."""
    days = lake.partitions("external_accounts")
    if not days:
        raise RuntimeError("no external_accounts snapshot yet: materialize external_accounts first")
    table = pq.read_table(lake.partition_file("external_accounts", days[-1]), columns=["account_id"])
    return table.column("account_id").to_pylist(), days[-1]


def api_metadata(stats: StatsSnapshot) -> dict[str, Any]:
    return {
        "api_calls": dg.MetadataValue.json(stats.calls),
        "api_requests": stats.total_requests,
        "api_retries": stats.total_retries,
        "api_failures": sum(stats.failures.values()),
        "api_seconds": round(stats.api_seconds, 3),
    }


class Stopwatch:
    """Wall and CPU seconds since it was made, as materialization metadata."""

    def __init__(self) -> None:
        self._began, self._cpu = time.monotonic(), time.process_time()

    def metadata(self) -> dict[str, float]:
        return {
            "duration_seconds": round(time.monotonic() - self._began, 3),
            "cpu_seconds": round(time.process_time() - self._cpu, 3),
        }


def markdown_preview(table: pa.Table, columns: Sequence[str], *, rows: int = 5) -> dg.MetadataValue:
    """The first rows of ``table`` as a small Markdown table (values as text)."""
    head = table.select(list(columns)).slice(0, rows).to_pylist()
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in columns) + " |" for r in head]
    if not head:
        lines.append("| " + " | ".join("" for _ in columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))
