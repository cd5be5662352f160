"""One backfill of the pipeline against the sandbox in its own process: wall time, CPU, peak RSS.

    python -m bench.pipeline_bench --accounts 200 --days 90                  # workload S, no latency
    python -m bench.pipeline_bench --accounts 200 --days 90 --realistic      # 60/80/400 ms per call

The pipeline runs in this process (Dagster's in-process executor), so ``ru_maxrss`` and the CPU
seconds are the pipeline's own; the sandbox's CPU is reported separately (a waited-for child).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from assets.balances import build_balances
from assets.external_accounts import build_external_accounts
from assets.resources import IngestResource, LakeResource, SyncteraApi
from assets.transactions import build_transactions
from pipelines.sandbox.process import sandbox_process

ONE_DAY = dt.timedelta(days=1)
REALISTIC = ["--latency", "list=0.06", "--latency", "transactions=0.08", "--latency", "balance=0.4"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--realistic", action="store_true", help="60/80/400 ms for list/transactions/balance")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight (and accounts at once)"
    )
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)

    today = dt.datetime.now(dt.UTC).date()
    start, end = today - args.days * ONE_DAY, today - ONE_DAY
    sandbox_args = [
        "--accounts",
        str(args.accounts),
        "--seed",
        str(args.seed),
        "--history-days",
        str(args.days + 30),
    ]
    daily = dg.DailyPartitionsDefinition(start_date=(start - 30 * ONE_DAY).isoformat(), timezone="UTC")
    accounts = build_external_accounts(daily)
    assets = [accounts, build_transactions(daily, accounts), build_balances(daily, accounts)]
    key = "bench-key"
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "home").mkdir()
        with sandbox_process(sandbox_args + (REALISTIC if args.realistic else []), api_key=key) as base_url:
            began, cpu = time.perf_counter(), time.process_time()
            with dg.DagsterInstance.local_temp(tempdir=str(root / "home")) as instance:
                result = dg.materialize(
                    assets,
                    instance=instance,
                    resources={
                        "synctera": SyncteraApi(
                            base_url=base_url, api_key=key, max_concurrency=args.concurrency
                        ),
                        "lake": LakeResource(data_dir=str(root / "data")),
                        "ingest": IngestResource(account_concurrency=args.concurrency),
                    },
                    tags={
                        "dagster/asset_partition_range_start": start.isoformat(),
                        "dagster/asset_partition_range_end": end.isoformat(),
                    },
                )
            wall, pipeline_cpu = time.perf_counter() - began, time.process_time() - cpu
        sandbox_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        events = [
            e for e in result.get_asset_materialization_events() if e.asset_key.path == ["transactions"]
        ]
        meta = {k: v.value for k, v in events[-1].materialization.metadata.items()}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = meta["rows_written"]
    profile = "realistic" if args.realistic else "zero"
    report = [
        ("workload", f"{args.accounts} accounts x {args.days} days, {profile} latency"),
        ("rows", f"{rows:,}"),
        ("wall", f"{wall:.1f} s (the whole run, Dagster included)"),
        (
            "pipeline CPU",
            f"{pipeline_cpu:.1f} s ({pipeline_cpu / max(1, rows) * 1e6:.1f} s per million rows)",
        ),
        ("sandbox CPU", f"{sandbox_cpu.ru_utime + sandbox_cpu.ru_stime:.1f} s"),
        ("peak RSS", f"{peak:.0f} MiB"),
        (
            "tx calls",
            f"{meta['transaction_calls']} ({meta['windows_split']} split, {meta['incomplete_days']} flagged)",
        ),
    ]
    for name, value in report:
        print(f"{name:<15} {value}")


if __name__ == "__main__":
    main()
