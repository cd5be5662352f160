"""The window planner alone, over the sandbox's true day counts: fast what-ifs, no HTTP.

Capped answers are simulated as the sandbox gives them (a random 500 of the window's rows). With
``--oracle`` each account's planner is told its true mean rate in advance: the bound that better
cold-start probing alone could reach. With ``--oracle after-first-call`` it is told the rate after
its first call, as if one capped answer revealed the account's scale (it does not): the bound for a
planner that pays the one capped call a cold start cannot avoid and nothing more.

    python -m bench.planner_sim --days 90 --seeds 7 8 11
    python -m bench.planner_sim --days 90 --seeds 7 8 11 --oracle
    python -m bench.planner_sim --days 90 --seeds 7 8 11 --oracle after-first-call
    python -m bench.planner_sim --days 90 --seeds 7 8 11 --cold-split 6   # another probe size
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


def sandbox_for(*, seed: int, accounts: int, density: str, days: int) -> Sandbox:
    """The sandbox both this simulation and ``bench.call_ratio``'s real runs read: the same data."""
    return Sandbox(SandboxConfig(seed=seed, accounts=accounts, density=density, history_days=days + 400))


def planned_calls(
    counts: list[int],
    start: dt.date,
    *,
    rate: float | None,
    rng: np.random.Generator,
    rate_after_first_call: float | None = None,
    cold_split: int | None = None,
) -> int:
    by_day = {start + n * ONE_DAY: c for n, c in enumerate(counts)}
    end = start + len(counts) * ONE_DAY
    probe = {} if cold_split is None else {"cold_split": cold_split}
    planner = WindowPlanner(start, end, rate=rate, **probe)
    calls = 0
    while (window := planner.next_window()) is not None:
        calls += 1
        days = [window.start + n * ONE_DAY for n in range(window.days)]
        rows = np.array([by_day[d] for d in days])
        if rows.sum() > TRANSACTIONS_CAP:
            rows = rng.multivariate_hypergeometric(rows, TRANSACTIONS_CAP)
        answer = {d: int(c) for d, c in zip(days, rows, strict=True) if c}
        planner.record(window, answer)
        if calls == 1 and rate_after_first_call is not None:
            # The oracle: a planner that knew the rate all along, given the same first answer.
            planner = WindowPlanner(start, end, rate=rate_after_first_call)
            planner.record(window, answer)
    return calls


def oracle_calls(counts: list[int], start: dt.date, *, seed: int) -> int:
    """Calls of the planner told the account's true mean rate before its first call: the yardstick
    of a cold backfill, which cannot know it (``bench.call_ratio``)."""
    return planned_calls(counts, start, rate=statistics.fmean(counts), rng=np.random.default_rng(seed))


def scale_known_calls(counts: list[int], start: dt.date, *, seed: int) -> int:
    """Calls of the planner told the account's true mean rate right after its first answer: a cold
    start that pays its capped call but learns the account's scale from it for free. A random 500
    of N rows says nothing of N, so a real cold start must still buy it (a probe); this bounds what
    any probing could save."""
    mean = statistics.fmean(counts)
    rng = np.random.default_rng(seed)
    return planned_calls(counts, start, rate=None, rng=rng, rate_after_first_call=mean)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.planner_sim", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--density", choices=DENSITY_PROFILES, default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument(
        "--oracle",
        nargs="?",
        const="before",
        choices=["before", "after-first-call"],
        help="give each planner its account's true mean rate (before its first call, or after it)",
    )
    parser.add_argument(
        "--cold-split", type=int, help="after a cold capped answer, probe 1/N of its days (what-if)"
    )
    args = parser.parse_args(argv)
    print(f"{'seed':>4} {'calls':>6} {'minimum':>8} {'ratio':>6}")
    by_class = {name: [0, 0] for name in ("idle", "light", "medium", "heavy")}
    for seed in args.seeds:
        sandbox = sandbox_for(seed=seed, accounts=args.accounts, density=args.density, days=args.days)
        start = sandbox.today - args.days * ONE_DAY
        calls = minimum = 0
        for account in sandbox.accounts():
            counts = sandbox.true_day_counts(account["id"], start, args.days)
            mean = statistics.fmean(counts)
            planned = planned_calls(
                counts,
                start,
                rate=mean if args.oracle == "before" else None,
                rng=np.random.default_rng(seed),
                rate_after_first_call=mean if args.oracle == "after-first-call" else None,
                cold_split=args.cold_split,
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
