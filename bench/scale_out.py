"""One backfill on 1, 2 and 4 Celery workers on this machine: wall, CPU, calls, memory per worker,
and whether every configuration lands the same warehouse.

    python -m bench.scale_out --accounts 460 --days 90 --realistic --workers 1,2,4
    python -m bench.scale_out ... --write BENCHMARKS.md      # the table between its markers

Each configuration gets a fresh lake, a PostgreSQL database for the instance and a RabbitMQ virtual
host (both removed after), ``N`` workers (``python -m pipelines.worker``, one step at a time each)
and ``SYNCTERA_SHARDS=N``; the backfill is the operator's CLI command with the Celery executor. The
sandbox runs in a process of its own (not measured). CPU is every measured process's (the CLI's run
coordinator and the workers, from ``RUSAGE_CHILDREN`` once they are reaped); memory is sampled per
worker's process tree (``process_tree``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import duckdb

from bench.paths import _cpu_of_children, _run_totals
from bench.pipeline_bench import sandbox_args
from bench.process_tree import TreeSampler
from pipelines.run import backfill_command
from pipelines.sandbox.process import sandbox_process
from pipelines.settings import REPO_ROOT
from tests.conftest import warehouse_facts
from tests.services import celery_worker, instance_env, scratch_database, scratch_vhost

ONE_DAY = dt.timedelta(days=1)


def markers(accounts: int, days: int) -> tuple[str, str]:
    """The lines a workload's table sits between in BENCHMARKS.md."""
    return (
        f"<!-- bench.scale_out {accounts}x{days}: begin -->",
        f"<!-- bench.scale_out {accounts}x{days}: end -->",
    )


def _log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _facts_digest(data_dir: Path) -> str:
    """One digest of the rows of unflagged days, the proven and the flagged account-days."""
    rows, proven, flagged = warehouse_facts(data_dir)
    digest = hashlib.sha256()
    for part in (rows, proven, flagged):
        digest.update(repr(sorted(map(repr, part))).encode())
    return digest.hexdigest()[:16]


def _longest_account_seconds(data_dir: Path) -> float:
    """From one account's first window fetched to its last: the chain of windows an account asks for
    one after another (each sized by the answers before it), which no number of workers shortens."""
    windows = str(data_dir / "transaction_windows" / "*" / "*.parquet")
    connection = duckdb.connect()
    try:
        row = connection.execute(
            "SELECT max(span) FROM (SELECT epoch(max(fetched_at)) - epoch(min(fetched_at)) AS span "
            "FROM read_parquet(?) GROUP BY account_id)",
            [windows],
        ).fetchone()
    finally:
        connection.close()
    return float(row[0]) if row and row[0] is not None else 0.0


def run_once(workers: int, *, accounts: int, days: int, seed: int, realistic: bool) -> dict[str, Any]:
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - days * ONE_DAY, today - ONE_DAY
    key = "bench-key"
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        database = stack.enter_context(scratch_database())
        broker = stack.enter_context(scratch_vhost())
        base_url = stack.enter_context(
            sandbox_process(sandbox_args(accounts, days, seed, realistic), api_key=key)
        )
        home, data = scratch / "dagster_home", scratch / "data"
        home.mkdir()
        (home / "dagster.yaml").write_text((REPO_ROOT / "pipelines" / "dagster.production.yaml").read_text())
        instances = instance_env(database)
        env = {
            **os.environ,
            **instances,
            "SYNCTERA_BASE_URL": base_url,
            "SYNCTERA_API_KEY": key,
            "SYNCTERA_DATA_DIR": str(data),
            "SYNCTERA_START_DATE": (start - 30 * ONE_DAY).isoformat(),
            "DAGSTER_HOME": str(home),
            "SYNCTERA_EXECUTOR": "celery",
            "SYNCTERA_CELERY_BROKER": broker,
            "SYNCTERA_SHARDS": str(workers),
            "PYTHONWARNINGS": "ignore",
        }
        cpu_before = _cpu_of_children()
        samplers = []
        with ExitStack() as running:  # the workers, stopped and reaped before the sandbox
            for n in range(workers):
                log = scratch / f"worker-{n}.log"
                process = running.enter_context(celery_worker(f"bench-{n}@scale-out", env, log))
                samplers.append(running.enter_context(TreeSampler(process.pid)))
            began = time.perf_counter()
            done = subprocess.run(  # noqa: S603 - our own fixed argv
                backfill_command(start, end),
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - began
        cpu = _cpu_of_children() - cpu_before  # the workers' and the CLI's, the sandbox still alive
        if done.returncode:
            raise RuntimeError(
                f"the backfill failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        os.environ.update(instances)  # the instance is read back here
        totals = _run_totals(home)
        digest = _facts_digest(data)
        longest = _longest_account_seconds(data)
    return {
        "workers": workers,
        "accounts": accounts,
        "days": days,
        "realistic": realistic,
        "wall_seconds": wall,
        "cpu_seconds": cpu,  # workers (from their start) + the CLI's run coordinator
        "worker_peak_pss_mib": max(s.footprint.peak_pss_mib for s in samplers),
        "worker_peak_rss_mib": max(s.footprint.peak_rss_mib for s in samplers),
        # The processes of the worker whose tree peaked highest, at that moment (command, PSS MiB).
        "worker_at_peak": max(samplers, key=lambda s: s.footprint.peak_pss_mib).footprint.at_peak[:6],
        "warehouse": digest,
        "longest_account_seconds": longest,
        **totals,
    }


def table(results: list[dict[str, Any]], *, command: str) -> list[str]:
    from bench.perf import _commit

    first = results[0]
    base = first["wall_seconds"]
    begin, end = markers(first["accounts"], first["days"])
    lines = [
        begin,
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{dt.date.today()}, commit {_commit()}. One run per configuration. Command: `{command}`.",
        "",
        f"{first['accounts']} accounts × {first['days']} days"
        + (" (realistic latency)" if first["realistic"] else "")
        + f", {first['rows']:,} transactions; each configuration's shards = its workers.",
        "",
        "| Celery workers | wall (s) | speed-up | CPU, all processes (s) | transaction calls "
        "| transactions API span (s) | longest account (s) | peak PSS per worker (MiB) "
        "| peak RSS per worker (MiB) | warehouse |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        same = "same" if r["warehouse"] == first["warehouse"] else f"DIFFERS ({r['warehouse']})"
        lines.append(
            f"| {r['workers']} | {r['wall_seconds']:.1f} | {base / r['wall_seconds']:.2f}× "
            f"| {r['cpu_seconds']:.1f} | {r['transaction_calls']:,} | {r['transactions_api_seconds']:.1f} "
            f"| {r['longest_account_seconds']:.1f} "
            f"| {r['worker_peak_pss_mib']:.0f} | {r['worker_peak_rss_mib']:.0f} | {same} |"
        )
    return [*lines, "", *projection(first), end]


BOOK_ACCOUNTS, BOOK_DAYS = 100_000, 365
RATES = (25, 50, 100, 200)
"""Requests per second the API might allow: NOTES.md §8 found no documented number."""


def projection(one: dict[str, Any]) -> list[str]:
    """A book of ``BOOK_ACCOUNTS`` × ``BOOK_DAYS`` on paper, from the one-worker run's figures: calls
    and rows scale with account-days; CPU with rows; the API's rate bounds the wall."""
    account_days = one["accounts"] * one["days"]
    scale = BOOK_ACCOUNTS * BOOK_DAYS / account_days
    rows = one["rows"] * scale
    calls = one["transaction_calls"] * scale + BOOK_ACCOUNTS + BOOK_ACCOUNTS / 100  # + balances, listing
    core_hours = one["cpu_seconds"] / one["rows"] * rows / 3600
    lines = [
        f"On paper, {BOOK_ACCOUNTS:,} accounts × {BOOK_DAYS} days from the 1-worker run: "
        f"{rows / 1e6:,.0f} M transactions, {calls / 1e6:.2f} M calls (transactions at this run's "
        f"{one['transaction_calls'] / account_days:.3f} per account-day, one balance per account, the "
        f"listing's pages), {core_hours:.1f} core-hours of CPU at this run's "
        f"{one['cpu_seconds'] / one['rows'] * 1e6:.0f} µs per row (every process). A worker is one "
        "process, about one core; each keeps up to 32 requests in flight, about 400 requests/s at "
        "80 ms per call, so the rate limit binds first:",
        "",
        "| API rate limit (requests/s) | hours, bound by the rate | workers to keep up (CPU) |",
        "|---|---|---|",
    ]
    for rate in RATES:
        hours = calls / rate / 3600
        lines.append(f"| {rate} | {hours:.1f} | {max(1, -(-core_hours // hours)):.0f} |")
    return lines


def _write(path: Path, lines: list[str]) -> None:
    text = path.read_text()
    block = "\n".join(lines)
    begin, end = lines[0], lines[-1]
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=460)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--realistic", action="store_true", help="the API's latency (bench.pipeline_bench)")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--json", action="store_true", help="one JSON object per configuration")
    parser.add_argument("--write", type=Path, help="replace the table between its markers in this file")
    args = parser.parse_args(argv)
    results = []
    for workers in (int(n) for n in args.workers.split(",")):
        _log(f"{workers} worker(s)")
        result = run_once(
            workers, accounts=args.accounts, days=args.days, seed=args.seed, realistic=args.realistic
        )
        _log(json.dumps(result))
        results.append(result)
        if args.json:
            print(json.dumps(result), flush=True)
    command = "python -m bench.scale_out " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = table(results, command=command.replace(f" --write {args.write}", "") if args.write else command)
    print("\n".join(lines))
    if args.write:
        _write(args.write, lines)
    if len({r["warehouse"] for r in results}) != 1:
        raise SystemExit("the configurations did not land the same warehouse")


if __name__ == "__main__":
    main()
