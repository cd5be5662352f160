"""One backfill of the pipeline against the sandbox in its own process: calls, time, CPU, memory.

    python -m bench.pipeline_bench --accounts 200 --days 90                  # workload S, no latency
    python -m bench.pipeline_bench --accounts 200 --days 90 --realistic      # 60/80/400 ms per call
    py-spy record -f raw -o s.txt -- python -m bench.pipeline_bench          # where the CPU goes:
    python -m bench.spy_summary s.txt                                        # ... by component

The pipeline runs in this process (Dagster's in-process executor), so ``ru_maxrss`` and the CPU
seconds are the pipeline's own; the sandbox's CPU is reported separately (a waited-for child).
With ``--bare`` a bare client (``bench.bare_client``) then GETs the same responses in a process of
its own and only decodes the JSON: the CPU floor; and again with ``--strict`` (decode with the
pipeline's checks, Arrow, Parquet per day): the least a correct pipeline costs. ``--json`` prints one
JSON object instead of text.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from assets import build_assets
from assets.resources import IngestResource, LakeResource, SyncteraApi
from pipelines.sandbox import Sandbox, SandboxConfig
from pipelines.sandbox.process import sandbox_process
from pipelines.windows import minimum_calls

ONE_DAY = dt.timedelta(days=1)
LATENCY = {"list": 0.06, "transactions": 0.08, "balance": 0.4}
"""The realistic profile: seconds per call of each endpoint."""


def sandbox_args(accounts: int, days: int, seed: int, realistic: bool) -> list[str]:
    args = ["--accounts", str(accounts), "--seed", str(seed), "--history-days", str(days + 30)]
    if realistic:
        for endpoint, seconds in LATENCY.items():
            args += ["--latency", f"{endpoint}={seconds}"]
    return args


def minimum_transaction_calls(accounts: int, days: int, seed: int) -> int:
    """The yardstick: greedy packing of every account's true day counts (see ``minimum_calls``)."""
    sandbox = Sandbox(SandboxConfig(seed=seed, accounts=accounts, history_days=days + 30))
    start = sandbox.today - days * ONE_DAY
    return sum(minimum_calls(sandbox.true_day_counts(a["id"], start, days)) for a in sandbox.accounts())


def run_once(
    *,
    accounts: int,
    days: int,
    seed: int,
    realistic: bool,
    concurrency: int,
    data_dir: Path,
    requests_per_second: float | None = None,
    bare: bool = False,
    adaptive: bool = True,
) -> dict[str, Any]:
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - days * ONE_DAY, today - ONE_DAY
    daily = dg.DailyPartitionsDefinition(start_date=(start - 30 * ONE_DAY).isoformat(), timezone="UTC")
    assets = build_assets(daily)
    key = "bench-key"
    figures: dict[str, Any] = {}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with (
        tempfile.TemporaryDirectory() as home,
        sandbox_process(sandbox_args(accounts, days, seed, realistic), api_key=key) as base_url,
    ):
        began, cpu = time.perf_counter(), time.process_time()
        with dg.DagsterInstance.local_temp(tempdir=home) as instance:
            result = dg.materialize(
                assets,
                instance=instance,
                resources={
                    "synctera": SyncteraApi(
                        base_url=base_url,
                        api_key=key,
                        max_concurrency=concurrency,
                        adaptive_concurrency=adaptive,
                        requests_per_second=requests_per_second,
                    ),
                    "lake": LakeResource(data_dir=str(data_dir)),
                    # As the pipeline's default: twice the accounts, so that requests, not accounts,
                    # are what is limited.
                    "ingest": IngestResource(account_concurrency=2 * concurrency),
                },
                tags={
                    "dagster/asset_partition_range_start": start.isoformat(),
                    "dagster/asset_partition_range_end": end.isoformat(),
                },
            )
            stored = instance.get_run_by_id(result.run_id)
            run_tags = dict(stored.tags) if stored else {}
        figures["wall_seconds"] = time.perf_counter() - began
        figures["pipeline_cpu_seconds"] = time.process_time() - cpu
        figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if bare:
            figures.update(_bare(base_url, key, data_dir, concurrency, strict=not realistic))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures["sandbox_cpu_seconds"] = (
        (children.ru_utime + children.ru_stime)
        - (children_before.ru_utime + children_before.ru_stime)
        - figures.get("bare_cpu_total_seconds", 0.0)
        - figures.get("strict_cpu_total_seconds", 0.0)
    )

    meta = {}
    for event in result.get_asset_materialization_events():
        step = event.asset_key.path[-1]
        meta[step] = {k: v.value for k, v in event.materialization.metadata.items()}
    listing, balances = meta["external_accounts"], meta["balances"]
    # The transactions run's totals are tags of the run (its partitions carry each day's figures).
    tx = {k.removeprefix("synctera/"): v for k, v in run_tags.items() if k.startswith("synctera/")}
    calls = {
        "list": listing["api_calls"].get("listExternalAccounts", 0),
        "transactions": int(tx["transaction_calls"]),
        "balance": balances["api_calls"].get("getExternalAccountBalance", 0),
    }
    spans = {
        "list": listing["api_seconds"],
        "transactions": float(tx["api_seconds"]),
        "balance": balances["api_seconds"],
    }
    floors = {e: calls[e] * LATENCY[e] / concurrency for e in calls}
    floor = sum(floors.values())
    figures.update(
        rows=int(tx["transactions_rows"]),
        transaction_calls=calls["transactions"],
        windows_split=int(tx["windows_split"]),
        incomplete_days=int(tx["incomplete_account_days"]),
        calls=calls,
        requests=listing["api_requests"] + int(tx["api_requests"]) + balances["api_requests"],
        api_seconds=sum(spans.values()),
        api_seconds_by_endpoint=spans,
        assets_cpu_seconds=listing["cpu_seconds"]
        + float(tx["transactions_cpu_seconds"])
        + balances["cpu_seconds"],
        throttled=listing["api_throttled"] + int(tx["api_throttled"]) + balances["api_throttled"],
        concurrency_limit_end={
            "list": listing.get("api_concurrency_limit"),
            "transactions": tx.get("api_concurrency_limit"),
            "balance": balances.get("api_concurrency_limit"),
        },
        latency_floor_seconds=floor,
        latency_floor_by_endpoint={e: round(f, 3) for e, f in floors.items()},
        span_over_floor=round(sum(spans.values()) / floor, 2) if realistic and floor else None,
        realistic=realistic,
    )
    return figures


def _bare(base_url: str, key: str, data_dir: Path, concurrency: int, *, strict: bool) -> dict[str, Any]:
    """Run the bare client over the windows the pipeline asked for, in a process of its own; with
    ``strict``, then again decoding, checking and writing as the least strict pipeline does."""
    windows = duckdb.sql(
        "SELECT account_id, start_date::VARCHAR, end_date::VARCHAR FROM read_parquet(?)",
        params=[str(data_dir / "transaction_windows" / "*" / "*.parquet")],
    ).fetchall()
    plan = data_dir.parent / "bare-plan.json"
    plan.write_text(json.dumps({"windows": windows, "accounts": sorted({w[0] for w in windows})}))
    figures: dict[str, Any] = {}
    written = tempfile.TemporaryDirectory(prefix="bench-strict-")
    modes = [("bare", [])] + ([("strict", ["--strict", written.name])] if strict else [])
    for prefix, extra in modes:
        done = subprocess.run(  # noqa: S603 (our own module, our own arguments)
            [sys.executable, "-m", "bench.bare_client", base_url, str(plan), str(concurrency), *extra],
            capture_output=True,
            text=True,
            env={**os.environ, "BENCH_API_KEY": key},
        )
        if done.returncode:
            raise RuntimeError(f"bench.bare_client {' '.join(extra)} failed:\n{done.stderr[-3000:]}")
        figures.update({f"{prefix}_{k}": v for k, v in json.loads(done.stdout).items()})
    written.cleanup()
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--realistic", action="store_true", help="60/80/400 ms for list/transactions/balance")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight at most (accounts at once: twice)"
    )
    parser.add_argument("--fixed", action="store_true", help="a fixed concurrency limit, not an adaptive one")
    parser.add_argument("--requests-per-second", type=float, default=None)
    parser.add_argument("--bare", action="store_true", help="also measure the bare client's CPU floor")
    parser.add_argument("--data", type=Path, default=None, help="keep the lake here (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data or Path(scratch) / "data"
        figures = run_once(
            accounts=args.accounts,
            days=args.days,
            seed=args.seed,
            realistic=args.realistic,
            concurrency=args.concurrency,
            data_dir=data_dir,
            requests_per_second=args.requests_per_second,
            bare=args.bare,
            adaptive=not args.fixed,
        )
    if args.json:
        print(json.dumps(figures))
        return
    rows = figures["rows"]
    for name, value in figures.items():
        print(f"{name:<28} {value}")
    print(
        f"{'pipeline CPU per million rows':<28} {figures['pipeline_cpu_seconds'] / max(1, rows) * 1e6:.1f} s"
    )


if __name__ == "__main__":
    main()
