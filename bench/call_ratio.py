"""Transaction calls of a real backfill ÷ the minimum possible, on the sandbox's data.

The minimum: for each account, its true day counts packed greedily into windows of at most 499
rows, a day of 500 or more costing one call of its own. The backfill is a real Dagster run (one
run for the whole range) against the sandbox over HTTP; its calls are read from the ledger.

    python -m bench.call_ratio --days 90            # the issue's measure, on the default data
    python -m bench.call_ratio --days 90 --density mixed --seeds 7 8 11
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from assets import build_assets
from assets.resources import IngestResource, LakeResource, SyncteraApi
from pipelines import warehouse
from pipelines.sandbox import DENSITY_PROFILES, Sandbox, SandboxConfig, running
from pipelines.windows import minimum_calls

ONE_DAY = dt.timedelta(days=1)


def backfill(sandbox: Sandbox, base_url: str, key: str, start: dt.date, end: dt.date, root: Path) -> None:
    daily = dg.DailyPartitionsDefinition(start_date=(start - 400 * ONE_DAY).isoformat(), timezone="UTC")
    assets = build_assets(daily)
    (root / "home").mkdir(exist_ok=True)
    with dg.DagsterInstance.local_temp(tempdir=str(root / "home")) as instance:
        result = dg.materialize(
            assets,
            instance=instance,
            resources={
                "synctera": SyncteraApi(base_url=base_url, api_key=key),
                "lake": LakeResource(data_dir=str(root / "data")),
                "ingest": IngestResource(),
            },
            tags={
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat(),
            },
        )
    assert result.success


def measure(
    *, seed: int, accounts: int, days: int, density: str, daily_runs: int
) -> list[tuple[str, int, int]]:
    """(label, calls, minimum) for the backfill, then for ``daily_runs`` scheduled-style daily runs."""
    sandbox = Sandbox(SandboxConfig(seed=seed, accounts=accounts, density=density, history_days=days + 400))
    today = dt.datetime.now(dt.UTC).date()
    sandbox.today = today
    rows: list[tuple[str, int, int]] = []
    with running(sandbox) as server, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        ranges = [("backfill", today - days * ONE_DAY, today - ONE_DAY)]
        ranges += [(f"daily {n + 1}", today - 4 * ONE_DAY, today - ONE_DAY) for n in range(daily_runs)]
        # Yesterday alone: one call per account, whatever its density (a capped day is flagged).
        ranges += [("yesterday", today - ONE_DAY, today - ONE_DAY)]
        for label, start, end in ranges:
            backfill(sandbox, server.base_url, server.api_key, start, end, root)
            connection = warehouse.connect(root / "data")
            try:
                account_ids = [
                    r[0] for r in connection.execute("SELECT account_id FROM external_accounts").fetchall()
                ]
                (calls,) = connection.execute(
                    "SELECT count(*) FROM transaction_windows WHERE start_date BETWEEN ? AND ?", [start, end]
                ).fetchone() or (0,)
            finally:
                connection.close()
            days = (end - start).days + 1
            minimum = sum(minimum_calls(sandbox.true_day_counts(a, start, days)) for a in account_ids)
            rows.append((label, int(calls), minimum))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.call_ratio", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--density", choices=DENSITY_PROFILES, default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument("--daily-runs", type=int, default=1, help="warm daily runs after the backfill")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    print(f"{'seed':>4}  {'run':<10} {'calls':>6} {'minimum':>8} {'ratio':>6}")
    for seed in args.seeds:
        for label, calls, minimum in measure(
            seed=seed,
            accounts=args.accounts,
            days=args.days,
            density=args.density,
            daily_runs=args.daily_runs,
        ):
            print(f"{seed:>4}  {label:<10} {calls:>6} {minimum:>8} {calls / minimum:>6.3f}")


if __name__ == "__main__":
    main()
