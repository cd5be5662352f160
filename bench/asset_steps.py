"""Where the assets' CPU goes inside a real run: every step that touches each row, timed in place.

    python -m bench.asset_steps [--accounts 200] [--days 90] [--runs 3] [--write BENCHMARKS.md]

One zero-latency backfill per run, each in a fresh process as users run it (imports and Arrow's
first conversions included; ``bench.pipeline_bench.run_once``, the bare client after it in a
process of its own), with a CPU timer (the run's thread's) around each function below. A step's
figure is its own: the timed steps it calls are subtracted. What no timer covers is the rest of the
assets: HTTP, asyncio, the client, the planner, Dagster's events, the listing and the balances.
That rest ÷ the bare floor is what the assets would cost if rows were free, and bounds the ratio
from below. ``bench.row_costs`` times the same steps alone in a tight loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import pipelines.day_buffer
import pipelines.ingest.transactions
import pipelines.spool
import pipelines.synctera.rows
import pipelines.transactions
from bench.perf import _commit, _record, _spread
from bench.pipeline_bench import run_once

STEPS: list[tuple[object, str, str]] = [
    (pipelines.synctera.rows, "decode_transaction_batch", "checked decode (msgspec structs)"),
    (pipelines.transactions, "_checked_rows", "row checks (id, date in the window)"),
    (pipelines.transactions, "_unique", "repeated ids, seen ids"),
    (pipelines.day_buffer.DayBuffer, "add", "day buffer"),
    (pipelines.day_buffer.DayBuffer, "flush", "day buffer"),
    (pipelines.day_buffer, "window_rows_table", "rows to Arrow (`window_rows_table`)"),
    (pipelines.spool.DateSpool, "add", "spool: cut by day, to disk"),
    (pipelines.spool.DateSpool, "seal", "spool: cut by day, to disk"),
    (pipelines.spool, "_read", "spool: read back"),
    (pq, "write_table", "Parquet writes (every partition, the ledger's too)"),
    (pipelines.ingest.transactions, "duplicate_keys", "uniqueness check over the partitions (DuckDB)"),
]
"""(owner, attribute, label): the functions timed; two with one label add up."""


class StepClock:
    """Each label's own CPU seconds: a timed call's time less that of the timed calls inside it."""

    def __init__(self) -> None:
        self.own: dict[str, float] = {}
        self._inner: list[float] = []  # per open call: time spent in timed calls inside it

    def wrap(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            began = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.thread_time() - began
                inner = self._inner.pop()
                self.own[label] = self.own.get(label, 0.0) + spent - inner
                if self._inner:
                    self._inner[-1] += spent

        return timed


@contextmanager
def timed_steps(clock: StepClock) -> Iterator[None]:
    """The functions of ``STEPS`` replaced by timed ones, and put back."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in STEPS]
    try:
        for (owner, name, label), (_, _, function) in zip(STEPS, originals, strict=True):
            setattr(owner, name, clock.wrap(function, label))
        yield
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def one_run(accounts: int, days: int) -> dict[str, Any]:
    clock = StepClock()
    with tempfile.TemporaryDirectory() as scratch, timed_steps(clock):
        figures = run_once(
            accounts=accounts,
            days=days,
            seed=7,
            realistic=False,
            concurrency=32,
            data_dir=Path(scratch) / "data",
            bare=True,
        )
    return {"steps": clock.own, **figures}


SECONDS, PERCENT = "{:.2f}", "{:.0f}"


def ratio(numerators: list[float], denominators: list[float]) -> list[float]:
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def table(runs: list[dict[str, Any]]) -> str:
    rows = runs[0]["rows"]
    labels = list(dict.fromkeys(label for _, _, label in STEPS))

    def per_row(values: list[float]) -> str:
        return _spread([v / rows * 1e6 for v in values], "{:.2f}")

    lines = ["| step | CPU s | µs per row kept | share of the assets' CPU |", "|---|---|---|---|"]
    for label in labels:
        spent = [r["steps"].get(label, 0.0) for r in runs]
        shares = [r["steps"].get(label, 0.0) / r["assets_cpu_seconds"] * 100 for r in runs]
        cells = [label, _spread(spent, SECONDS), per_row(spent), f"{_spread(shares, PERCENT)} %"]
        lines.append(f"| {' | '.join(cells)} |")
    timed = [sum(r["steps"].values()) for r in runs]
    assets = [r["assets_cpu_seconds"] for r in runs]
    rest = [a - t for a, t in zip(assets, timed, strict=True)]
    bare = [r["bare_cpu_seconds"] for r in runs]
    lines += [
        f"| **the steps above, together** | {_spread(timed, SECONDS)} | {per_row(timed)} | "
        f"{_spread([100 * r for r in ratio(timed, assets)], PERCENT)} % |",
        f"| the rest of the assets (HTTP, asyncio, client, planner, Dagster's events, listing, balances) "
        f"| {_spread(rest, SECONDS)} | {per_row(rest)} | |",
        f"| the assets' CPU | {_spread(assets, SECONDS)} | {per_row(assets)} | 100 % |",
        f"| the bare client (GET + `json.loads`, same calls) | {_spread(bare, SECONDS)} | {per_row(bare)} | "
        "|",
        f"| **assets ÷ bare floor** | {_spread(ratio(assets, bare), SECONDS)} | | |",
        f"| **the rest ÷ bare floor: the assets with rows free** "
        f"| {_spread(ratio(rest, bare), SECONDS)} | | |",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asset_steps", description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None, help="record the table in this Markdown file")
    parser.add_argument("--one", action="store_true", help="one run in this process, as JSON")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    if args.one:
        print(json.dumps(one_run(args.accounts, args.days)))
        return
    command = [sys.executable, "-m", "bench.asset_steps", "--one"]
    command += ["--accounts", str(args.accounts), "--days", str(args.days)]
    runs = []
    for _ in range(args.runs):
        done = subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
        runs.append(json.loads(done.stdout.splitlines()[-1]))
    text = (
        f"Commit {_commit()}, {time.strftime('%Y-%m-%d')}; {args.accounts} accounts × {args.days} days "
        f"({runs[0]['rows']:,} rows kept), zero latency, medians of {args.runs} runs (min–max). "
        f"Command: `python -m bench.asset_steps --runs {args.runs}`.\n\n{table(runs)}"
    )
    print(text)
    if args.write is not None:
        _record(args.write, "steps", text)


if __name__ == "__main__":
    main()
