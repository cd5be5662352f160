"""What the assets share: the run's date range and metadata helpers."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.synctera import StatsSnapshot

SINGLE_RUN = dg.BackfillPolicy.single_run()
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
GROUP = "synctera"


class PartitionRangeError(ValueError):
    """The run asks for partitions the definition does not have (before its start, or not yet complete)."""


def _check_range(partitions_def: dg.PartitionsDefinition, start: str, end: str) -> None:
    valid = partitions_def.get_partition_keys()
    if not valid or start not in valid or end not in valid:
        span = f"{valid[0]}..{valid[-1]}" if valid else "none yet"
        raise PartitionRangeError(
            f"partitions {start}..{end} are outside the definition (complete UTC days {span})"
        )


def run_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The run's partitions as dates ``[start, end)``: one day, or a whole backfill range.

    Dagster does not check a range given by tags against the definition, so it is checked here,
    before any call: every day must be a partition, and complete (nothing from today or later).
    """
    partitions_def = context.assets_def.partitions_def
    assert partitions_def is not None
    keys = context.partition_key_range
    _check_range(partitions_def, keys.start, keys.end)
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def refuse_a_bad_run_range(context: dg.AssetExecutionContext, daily: dg.PartitionsDefinition) -> None:
    """An unpartitioned asset in a run for days (the daily run, a backfill) checks those days too,
    so that a range outside the definition fails before the listing or any balance is asked for."""
    tags = context.run.tags
    start = tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG)
    end = tags.get(RANGE_END_TAG) or tags.get(PARTITION_TAG)
    if start and end:
        _check_range(daily, start, end)


def cancellation(context: dg.AssetExecutionContext) -> Callable[[], bool]:
    """Whether this run is being cancelled (the UI's Terminate or Cancel backfill, the CLI's)."""
    return run_cancelled(context.instance, context.run.run_id, context.log)


_STOPPING = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)
_GOING_ON = [status for status in dg.DagsterRunStatus if status not in _STOPPING]


def run_cancelled(instance: dg.DagsterInstance, run_id: str, log: logging.Logger) -> Callable[[], bool]:
    """Asks the run storage, each time it is called, whether run ``run_id`` is cancelling, cancelled
    or deleted (a run whose record is gone has nobody to report to: it stops as well).

    Asked every second of a fetch: one query for the run's id among the runs not being cancelled
    (about half of ``get_run_by_id``, which also deserialises the whole run)."""
    filters = dg.RunsFilter(run_ids=[run_id], statuses=_GOING_ON)

    def cancelled() -> bool:
        try:
            going_on = instance.get_run_ids(filters=filters, limit=1)
        except Exception as exc:  # a busy run storage must not fail the run: ask again next second
            log.warning(f"could not read this run's status ({type(exc).__name__}); carrying on")
            return False
        return not going_on

    return cancelled


def api_metadata(stats: StatsSnapshot) -> dict[str, Any]:
    return {
        "api_calls": dg.MetadataValue.json(stats.calls),
        "api_requests": stats.total_requests,
        "api_retries": stats.total_retries,
        "api_failures": sum(stats.failures.values()),
        "api_seconds": round(stats.api_seconds, 3),
        **concurrency_metadata(stats),
    }


def concurrency_metadata(stats: StatsSnapshot) -> dict[str, Any]:
    """How many requests the API took at once: the answers 429/503, and the adaptive limit's end."""
    figures: dict[str, Any] = {"api_throttled": stats.total_throttled}
    if stats.concurrency_limit is not None:
        figures["api_concurrency_limit"] = round(stats.concurrency_limit, 2)
    if stats.peak_in_flight is not None:
        figures["api_peak_in_flight"] = stats.peak_in_flight
    return figures


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


def tag_run(context: dg.AssetExecutionContext, figures: dict[str, Any]) -> None:
    """The run's totals as tags of the run (``synctera/<name>``): shown once, on the run's page, where
    a partitioned asset's metadata would repeat them on every day of a backfill. A re-execution
    copies its parent's tags: ``synctera/totals_of_run`` says which run the figures are of."""
    tags = {f"synctera/{k}": str(v) for k, v in figures.items()}
    context.instance.add_run_tags(context.run.run_id, {**tags, "synctera/totals_of_run": context.run.run_id})
