"""The window planner alone, over the sandbox's true day counts: fast what-ifs, no HTTP.

Capped answers are simulated as the sandbox gives them (a random 500 of the window's rows). With
``--oracle`` each account's planner is told its true mean rate in advance: the bound that better
cold-start probing alone could reach.

    python -m bench.planner_sim --days 90 --seeds 7 8 11
    python -m bench.planner_sim --days 90 --seeds 7 8 11 --oracle
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
from collections.abc import Sequence

import numpy as np

from pipelines.sandbox import DENSITY_PROFILES, Sandbox, SandboxConfig
from pipelines.synctera import TRANSACTIONS_CAP
from pipelines.windows import WindowPlanner, minimum_calls

ONE_DAY = dt.timedelta(days=1)


def planned_calls(counts: list[int], start: dt.date, *, rate: float | None, rng: np.random.Generator) -> int:
    by_day = {start + n * ONE_DAY: c for n, c in enumerate(counts)}
    planner = WindowPlanner(start, start + len(counts) * ONE_DAY, rate=rate)
    calls = 0
    while (window := planner.next_window()) is not None:
        calls += 1
        days = [window.start + n * ONE_DAY for n in range(window.days)]
        rows = np.array([by_day[d] for d in days])
        if rows.sum() > TRANSACTIONS_CAP:
            rows = rng.multivariate_hypergeometric(rows, TRANSACTIONS_CAP)
        planner.record(window, {d: int(c) for d, c in zip(days, rows, strict=True) if c})
    return calls


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.planner_sim", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--density", choices=DENSITY_PROFILES, default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument(
        "--oracle", action="store_true", help="give each planner its account's true mean rate"
    )
    args = parser.parse_args(argv)
    print(f"{'seed':>4} {'calls':>6} {'minimum':>8} {'ratio':>6}")
    by_class = {name: [0, 0] for name in ("idle", "light", "medium", "heavy")}
    for seed in args.seeds:
        sandbox = Sandbox(
            SandboxConfig(
                seed=seed, accounts=args.accounts, density=args.density, history_days=args.days + 30
            )
        )
        start = sandbox.today - args.days * ONE_DAY
        calls = minimum = 0
        for account in sandbox.accounts():
            counts = sandbox.true_day_counts(account["id"], start, args.days)
            mean = statistics.fmean(counts)
            planned = planned_calls(
                counts, start, rate=mean if args.oracle else None, rng=np.random.default_rng(seed)
            )
            fewest = minimum_calls(counts)
            calls, minimum = calls + planned, minimum + fewest
            by_class[_density_class(mean)][0] += planned
            by_class[_density_class(mean)][1] += fewest
        print(f"{seed:>4} {calls:>6} {minimum:>8} {calls / minimum:>6.3f}")
    print(
        "by density class, all seeds: "
        + ", ".join(f"{name} {c / m:.3f} ({c}/{m})" for name, (c, m) in by_class.items() if m)
    )


def _density_class(mean: float) -> str:
    """The sandbox's default mix: idle, light (< 6 a day), medium (< 50), heavy."""
    return "idle" if mean == 0 else "light" if mean < 6 else "medium" if mean < 50 else "heavy"


if __name__ == "__main__":
    main()
