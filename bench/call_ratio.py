"""Transaction calls of real backfills against their yardsticks (issue 13, point 4), on the sandbox's data.

Three runs per seed, each a real Dagster run against the sandbox over HTTP, its calls read from the
ledger, each judged against what could be known:

- cold: the whole range with no ledger. It cannot know day counts before it asks, so it is judged
  against the planner told every account's true mean rate in advance (``bench.planner_sim --oracle``,
  over the same accounts' true day counts): target calls ≤ 1.05 × the oracle's. Printed beside it,
  the planner told the rate only after its first answer (``--oracle after-first-call``): it pays the
  capped call but no probe, so what separates a cold run from it is the price of learning the scale.
- warm: the scheduled daily run (yesterday and the lookback) after the backfill, each account's
  density known from the ledger: target calls ≤ 1.05 × the minimum (each account's true day counts
  packed greedily into windows of ≤ 499 rows, a day of 500 or more costing a call of its own).
- daily: yesterday alone: target exactly one call per account plus one per flagged day (a flagged
  day is a call of its own, so an account whose one day is flagged makes just that call).

    python -m bench.call_ratio --days 90 --seeds 7 8 11     # what `make bench` prints
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assets import build_assets
from assets.resources import IngestResource, LakeResource, SyncteraApi
from bench.planner_sim import oracle_calls, sandbox_for, scale_known_calls
from pipelines import warehouse
from pipelines.sandbox import DENSITY_PROFILES, Sandbox, running
from pipelines.windows import minimum_calls

ONE_DAY = dt.timedelta(days=1)
COLD_TARGET = 1.05  # cold calls ÷ the oracle's
WARM_TARGET = 1.05  # warm calls ÷ the minimum


def backfill(sandbox: Sandbox, base_url: str, key: str, start: dt.date, end: dt.date, root: Path) -> None:
    daily = dg.DailyPartitionsDefinition(start_date=(start - 400 * ONE_DAY).isoformat(), timezone="UTC")
    assets = build_assets(daily)
    (root / "home").mkdir(exist_ok=True)
    quiet = {"telemetry": {"enabled": False}}  # no welcome banner between the bench's lines
    with dg.DagsterInstance.local_temp(tempdir=str(root / "home"), overrides=quiet) as instance:
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


@dataclass(frozen=True)
class Run:
    """One run's calls and its yardstick: ``target`` calls, to be met exactly (daily) or within a ratio."""

    seed: int
    kind: str  # cold, warm or daily
    days: int
    calls: int
    minimum: int
    yardstick: str  # what the calls are judged against, in words
    target: int
    scale_known: int = 0  # cold: the calls of the planner told the rate after its first answer

    @property
    def ratio(self) -> float:
        return self.calls / self.target if self.target else float(self.calls == 0)

    @property
    def met(self) -> bool:
        if self.kind == "daily":
            return self.calls == self.target
        return self.ratio <= (COLD_TARGET if self.kind == "cold" else WARM_TARGET)


def _ledger(root: Path, start: dt.date, end: dt.date) -> tuple[list[str], dict[str, list[str]]]:
    """The snapshot's account ids, and each account's window outcomes dated in ``[start, end]``."""
    connection = warehouse.connect(root / "data")
    try:
        account_ids = [
            r[0] for r in connection.execute("SELECT account_id FROM external_accounts").fetchall()
        ]
        rows = connection.execute(
            "SELECT account_id, outcome FROM transaction_windows WHERE start_date BETWEEN ? AND ?",
            [start, end],
        ).fetchall()
    finally:
        connection.close()
    outcomes: dict[str, list[str]] = {a: [] for a in account_ids}
    for account_id, outcome in rows:
        outcomes.setdefault(account_id, []).append(outcome)
    return account_ids, outcomes


def measure(*, seed: int, accounts: int, days: int, density: str, daily_runs: int) -> list[Run]:
    """The cold backfill of ``days``, then ``daily_runs`` warm scheduled runs, then yesterday alone."""
    sandbox = sandbox_for(seed=seed, accounts=accounts, density=density, days=days)
    today = sandbox.today
    lookback = IngestResource().lookback_days
    runs: list[Run] = []
    with running(sandbox) as server, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        ranges = [("cold", today - days * ONE_DAY)]
        ranges += [("warm", today - (lookback + 1) * ONE_DAY)] * daily_runs
        ranges += [("daily", today - ONE_DAY)]
        for kind, start in ranges:
            end = today - ONE_DAY  # inclusive, as the partition range tags take it
            backfill(sandbox, server.base_url, server.api_key, start, end, root)
            account_ids, outcomes = _ledger(root, start, end)
            span = (end - start).days + 1
            counts = {a: sandbox.true_day_counts(a, start, span) for a in account_ids}
            minimum = sum(minimum_calls(c) for c in counts.values())
            scale_known = 0
            if kind == "cold":
                scale_known = sum(scale_known_calls(c, start, seed=seed) for c in counts.values())
                target = sum(oracle_calls(c, start, seed=seed) for c in counts.values())
                yardstick = f"oracle {target}, no probe {scale_known}"
            elif kind == "warm":
                target, yardstick = minimum, f"minimum {minimum}"
            else:
                flagged = sum(o.count("flagged") for o in outcomes.values())
                # One call per account for its unflagged days (none if its only day is flagged).
                unflagged = sum(1 for o in outcomes.values() if o.count("flagged") < span)
                target = unflagged + flagged
                yardstick = f"{unflagged} accounts + {flagged} flagged"
            calls = sum(len(o) for o in outcomes.values())
            runs.append(Run(seed, kind, span, calls, minimum, yardstick, target, scale_known))
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.call_ratio", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--density", choices=DENSITY_PROFILES, default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument("--daily-runs", type=int, default=1, help="warm daily runs after the backfill")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    targets = {
        "cold": f"≤ {COLD_TARGET} × oracle",
        "warm": f"≤ {WARM_TARGET} × minimum",
        "daily": "= exactly",
    }
    print(
        f"{'seed':>4}  {'run':<5} {'days':>4} {'calls':>6} {'minimum':>8}  {'yardstick':<26} {'÷':>6}  target"
    )
    runs: list[Run] = []
    for seed in args.seeds:
        for run in measure(
            seed=seed,
            accounts=args.accounts,
            days=args.days,
            density=args.density,
            daily_runs=args.daily_runs,
        ):
            runs.append(run)
            print(
                f"{seed:>4}  {run.kind:<5} {run.days:>4} {run.calls:>6} {run.minimum:>8}  "
                f"{run.yardstick:<26} {run.ratio:>6.3f}  {targets[run.kind]}: "
                f"{'met' if run.met else 'MISSED'}"
            )
    for kind in ("cold", "warm", "daily"):
        mine = [r for r in runs if r.kind == kind]
        calls, target = sum(r.calls for r in mine), sum(r.target for r in mine)
        print(
            f"{kind}, all seeds: {calls} calls ÷ {target} = {calls / target:.3f}; {targets[kind]} met in "
            f"{sum(r.met for r in mine)} of {len(mine)} runs"
        )
        if kind == "cold":
            known = sum(r.scale_known for r in mine)
            print(
                f"  the planner told each rate after its first answer (no probe): {known} calls ÷ "
                f"{target} = {known / target:.3f}; cold ÷ it = {calls / known:.3f}, the price of the probes"
            )


if __name__ == "__main__":
    main()
