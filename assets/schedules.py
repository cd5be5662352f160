"""The daily schedule: early morning UTC, yesterday plus a lookback, as one run."""

import datetime as dt

import dagster as dg

DAILY_CRON = "30 2 * * *"


def build_daily_schedule(
    partitions_def: dg.TimeWindowPartitionsDefinition, *, lookback_days: int
) -> dg.ScheduleDefinition:
    """Re-fetch ``lookback_days`` complete days before yesterday too, so late postings and pending →
    posted changes land; the re-fetched partitions are replaced, not appended."""

    @dg.schedule(
        name="daily_synctera_ingest",
        cron_schedule=DAILY_CRON,
        execution_timezone="UTC",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Yesterday and the {lookback_days} days before it, in one run, every day at 02:30 UTC.",
    )
    def daily_synctera_ingest(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        keys = partitions_def.get_partition_keys(current_time=now)
        if not keys:
            return dg.SkipReason("no complete day yet")
        end = dt.date.fromisoformat(keys[-1])
        start = max(dt.date.fromisoformat(keys[0]), end - dt.timedelta(days=lookback_days))
        return dg.RunRequest(
            run_key=f"daily-{end.isoformat()}",
            tags={
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat(),
            },
        )

    return daily_synctera_ingest
