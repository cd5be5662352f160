"""A code location that does nothing, partitioned like the pipeline: the floor of Dagster's own process
model (daemon, code server, run worker) for ``python -m bench.paths --floor``."""

import dagster as dg

daily = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC", end_offset=0)


@dg.asset(partitions_def=daily, backfill_policy=dg.BackfillPolicy.single_run())
def noop() -> None:
    """Nothing: what a run costs before it does any work."""


defs = dg.Definitions(assets=[noop], executor=dg.in_process_executor)
