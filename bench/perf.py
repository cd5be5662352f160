"""The performance benchmark: workloads S (and M with ``--m``), medians of several runs, as Markdown.

    python -m bench.perf                       # S = 200 accounts x 90 days, 3 runs per profile
    python -m bench.perf --m                   # also M = 2,000 accounts x 365 days
    python -m bench.perf --write BENCHMARKS.md # ... and record the tables (a section per workload)
    python -m bench.perf --only M --write BENCHMARKS.md  # re-measure one workload alone

Each run is a fresh process (``bench.pipeline_bench``) against a fresh sandbox process. Per workload:
zero latency (CPU per row against the bare client's floor, peak RSS) and the realistic latency
profile (wall time against the latency floor); the call ratio against the greedy minimum; a naive
baseline (one call per account-day, one account at a time) over a sample of accounts; three analyst
queries in DuckDB over the lake; and the request budget measured under ``--requests-per-second``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.naive import naive_run
from bench.pipeline_bench import minimum_transaction_calls
from pipelines import warehouse

WORKLOADS = {"S": (200, 90), "M": (2000, 365)}

QUERIES = {
    "monthly net flow per account": """
        SELECT account_id, date_trunc('month', date) AS month, sum(amount) AS net_minor_units
        FROM transactions WHERE date >= current_date - 365 GROUP BY ALL ORDER BY ALL""",
    "latest balance per account": """
        SELECT account_id, arg_max(current, observed_at) AS current, max(observed_at) AS observed_at
        FROM balances WHERE error IS NULL GROUP BY account_id""",
    "top merchants in a month": """
        SELECT merchant_name, count(*) AS transactions, sum(amount) AS minor_units
        FROM transactions
        WHERE date >= date_trunc('month', current_date - 40)
          AND date < date_trunc('month', current_date - 40) + INTERVAL 1 MONTH
        GROUP BY merchant_name ORDER BY minor_units DESC LIMIT 10""",
}


def _one_run(accounts: int, days: int, *extra: str, data: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.pipeline_bench", "--json"]
    command += ["--accounts", str(accounts), "--days", str(days), *extra]
    if data is not None:
        command += ["--data", str(data)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout  # noqa: S603
    return dict(json.loads(output.strip().splitlines()[-1]))


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """``median (min–max)``"""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def _query_times(data: Path) -> dict[str, float]:
    """Warm seconds of each analyst query through the warehouse file: median of 3 after one warm-up."""
    connection = warehouse.connect(data)  # as an analyst opens it (paths resolved beside the lake)
    times = {}
    try:
        for name, sql in QUERIES.items():
            connection.execute(sql).fetchall()
            runs = []
            for _ in range(3):
                began = time.perf_counter()
                connection.execute(sql).fetchall()
                runs.append(time.perf_counter() - began)
            times[name] = statistics.median(runs)
    finally:
        connection.close()
    return times


def workload(
    name: str,
    runs: int,
    naive_accounts: int,
    log: Callable[[str], None],
    *,
    realistic_runs: int,
    bare_runs: int,
) -> list[str]:
    """The workload's table; the bare client runs after the first ``bare_runs`` runs of each profile
    (its floor is a property of the calls, which barely change from run to run)."""
    accounts, days = WORKLOADS[name]
    log(f"{name}: computing the minimum number of transaction calls from the sandbox's truth")
    minimum = minimum_transaction_calls(accounts, days, seed=7)
    zero, realistic = [], []
    with tempfile.TemporaryDirectory() as scratch:
        kept = Path(scratch) / "data"
        for n in range(runs):
            log(f"{name}: zero-latency run {n + 1}/{runs}")
            bare = ["--bare"] if n < bare_runs else []
            zero.append(_one_run(accounts, days, *bare, data=kept if n == 0 else None))
        queries = _query_times(kept)
    for n in range(realistic_runs):
        log(f"{name}: realistic-latency run {n + 1}/{realistic_runs}")
        realistic.append(_one_run(accounts, days, "--realistic", *(["--bare"] if n < bare_runs else [])))
    log(f"{name}: naive baseline over {naive_accounts} accounts")
    naive = naive_run(accounts, days, sample=naive_accounts)
    naive_calls = accounts * days
    rows = [r["rows"] for r in zero]
    cpu_per_m = [r["pipeline_cpu_seconds"] / r["rows"] * 1e6 for r in zero]
    assets_per_m = [r["assets_cpu_seconds"] / r["rows"] * 1e6 for r in zero]
    bare_per_m = [r["bare_cpu_seconds"] / r["rows"] * 1e6 for r in zero if "bare_cpu_seconds" in r]
    floor = statistics.median(bare_per_m)
    strict_per_m = [r["strict_cpu_seconds"] / r["rows"] * 1e6 for r in zero if "strict_cpu_seconds" in r]
    # A run followed by the bare client kept the sandbox busy answering it too: left out if possible.
    sandbox_cpu = [r["sandbox_cpu_seconds"] for r in zero if "bare_cpu_seconds" not in r]
    sandbox_note = "runs without the bare client"
    if not sandbox_cpu:
        sandbox_cpu, sandbox_note = [r["sandbox_cpu_seconds"] for r in zero], "also answering the bare client"
    naive_wall = naive["seconds_per_call_realistic"] * naive_calls
    lines = [
        f"### {name}: {accounts:,} accounts × {days} days ({statistics.median(rows):,.0f} transactions)",
        "",
        "| figure | pipeline | target | naive baseline |",
        "|---|---|---|---|",
        f"| transaction calls ÷ minimum ({minimum:,}) | "
        f"{_spread([r['transaction_calls'] / minimum for r in zero + realistic], '{:.3f}')} | ≤ 1.15 | "
        f"{naive_calls / minimum:.1f} ({naive_calls:,} calls) |",
        f"| windows split / incomplete days flagged | {zero[0]['windows_split']} / "
        f"{zero[0]['incomplete_days']} | | 0 / 0: {naive['capped_days_share']:.2%} of account-days "
        f"silently short, {naive['rows_lost_share']:.2%} of rows lost |",
        f"| realistic: API span ÷ latency floor | "
        f"{_spread([r['api_seconds'] / r['latency_floor_seconds'] for r in realistic])} | ≤ 1.3 | "
        f"{naive_wall / statistics.median([r['latency_floor_seconds'] for r in realistic]):.0f} |",
        f"| realistic: API span / latency floor (s) | "
        f"{_spread([r['api_seconds'] for r in realistic], '{:.1f}')} / "
        f"{statistics.median([r['latency_floor_seconds'] for r in realistic]):.1f} | | "
        f"{naive_wall:,.0f} (computed: sequential) |",
        f"| realistic: bare client's span over the same calls (s): this machine's floor | "
        f"{_spread([r['bare_wall_seconds'] for r in realistic if 'bare_wall_seconds' in r], '{:.1f}')} | | |",
        f"| realistic: whole run incl. Dagster start-up and teardown (s) | "
        f"{_spread([r['wall_seconds'] for r in realistic], '{:.1f}')} | | |",
        f"| zero latency: wall (s) | {_spread([r['wall_seconds'] for r in zero], '{:.1f}')} | | "
        f"{naive['seconds_per_call_zero'] * naive_calls:,.0f} (extrapolated) |",
        f"| zero latency: pipeline CPU s per million rows | {_spread(cpu_per_m, '{:.1f}')} | | |",
        f"| zero latency: of which the assets' own code, CPU s per million rows | "
        f"{_spread(assets_per_m, '{:.1f}')} | | |",
        f"| bare client (GET + json.loads) CPU s per million rows | {_spread(bare_per_m, '{:.1f}')} | | |",
        f"| assets' CPU ÷ bare floor | {_spread([p / floor for p in assets_per_m])} | ≤ 1.5 | |",
        f"| the least strict pipeline (`bench.bare_client --strict`: GET, the same checked decode, "
        f"Arrow, Parquet per day; no Dagster) ÷ bare floor: the bound | "
        f"{_spread([p / floor for p in strict_per_m])} | | |",
        f"| pipeline CPU ÷ bare floor | {_spread([p / floor for p in cpu_per_m])} | | |",
        f"| sandbox CPU (s, its own process; {sandbox_note}) | {_spread(sandbox_cpu, '{:.1f}')} | | |",
        f"| peak RSS (MiB) | {_spread([r['peak_rss_mib'] for r in zero], '{:.0f}')} | ≤ 400 (M) | |",
    ]
    for query, seconds in queries.items():
        lines.append(f"| DuckDB warm: {query} (s) | {seconds:.3f} | ≤ 1 (M) | |")
    return [*lines, ""]


def budget(log: Callable[[str], None], rate: float = 20.0) -> list[str]:
    """A budget below what the machine could do, so that the budget and not the CPU sets the pace."""
    log(f"request budget: {rate:g} requests/s, 40 accounts x 60 days at zero latency")
    run = _one_run(40, 60, "--requests-per-second", str(rate))
    achieved = run["requests"] / run["api_seconds"]
    return [
        "### Request budget",
        "",
        f"`requests_per_second={rate:g}`, 32 requests in flight: {run['requests']:,} requests in "
        f"{run['api_seconds']:.1f} s of API time = **{achieved:.1f} requests/s** "
        f"({achieved / rate - 1:+.1%} against the budget; target within 5 %).",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n")[0])
    parser.add_argument("--m", action="store_true", help="also run workload M (slow: tens of minutes)")
    parser.add_argument(
        "--only", choices=WORKLOADS, default=None, help="run this workload alone (no request budget)"
    )
    parser.add_argument("--runs", type=_positive, default=3)
    parser.add_argument("--realistic-runs", type=_positive, default=None, help="default: --runs")
    parser.add_argument(
        "--bare-runs",
        type=_positive,
        default=None,
        help="runs per profile followed by the bare client (default all)",
    )
    parser.add_argument("--naive-accounts", type=int, default=10, help="accounts the naive baseline samples")
    parser.add_argument("--write", type=Path, default=None, help="write the tables to this Markdown file")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)

    names = [args.only] if args.only else ["S", "M"] if args.m else ["S"]
    command = f"python -m bench.perf{f' --only {args.only}' if args.only else ' --m' if args.m else ''}"
    realistic = args.runs if args.realistic_runs is None else args.realistic_runs
    bare = max(args.runs, realistic) if args.bare_runs is None else args.bare_runs
    extra = (f" --realistic-runs {realistic}" if args.realistic_runs else "") + (
        f" --bare-runs {bare}" if args.bare_runs else ""
    )
    # Each workload is its own section of the results, so that one can be re-measured alone.
    sections: dict[str, list[str]] = {}
    for name in names:
        sections[name] = [
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"{dt.date.today()}, commit {_commit()}. Medians of {args.runs} runs (min–max)"
            + (f", {realistic} under realistic latency" if realistic != args.runs else "")
            + (f", the bare client after {bare} per profile" if bare < max(args.runs, realistic) else "")
            + f". Command: `{command} --runs {args.runs}{extra}`.",
            "",
            *workload(name, args.runs, args.naive_accounts, log, realistic_runs=realistic, bare_runs=bare),
        ]
    if not args.only:
        sections["budget"] = budget(log)
    for name, lines in sections.items():
        text = "\n".join(lines)
        print(text)
        if args.write:
            _record(args.write, name, text)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _commit() -> str:
    """The commit measured (``+`` when tracked files other than BENCHMARKS.md have changed: writing
    one section must not mark the next one as measured on changed code), so figures can be traced."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)  # noqa: S603, S607
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)BENCHMARKS.md")
    return head + ("+" if changed else "")


def _record(path: Path, section: str, text: str) -> None:
    """Put ``text`` between the section's markers in ``path``, keeping everything around them."""
    begin, end = f"<!-- bench.perf {section}: begin -->", f"<!-- bench.perf {section}: end -->"
    block = f"{begin}\n{text}\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = old + ("\n" if old else "") + block + "\n"
    path.write_text(new)


if __name__ == "__main__":
    main()
