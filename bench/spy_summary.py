"""Where a run's CPU goes, by component, from a py-spy profile (raw, collapsed stacks).

    py-spy record -r 250 -f raw -o s-spy.txt -- python -m bench.pipeline_bench --accounts 200 --days 90
    python -m bench.spy_summary s-spy.txt

Each sample is charged to the innermost frame that belongs to a component below (so a Parquet write
called from an asset counts as the write, and Dagster's own event log as Dagster). py-spy leaves out
idle samples (a thread waiting in ``epoll``) but keeps a thread that is ready and waiting for a core
(the sandbox shares the machine): the shares are of active time, close to the CPU's but not equal
(a 500-account year: 155 s of samples for 119 s of CPU).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("validation (msgspec, pydantic: bytes to rows)", ("decode_transaction_batch", "validate_json")),
    ("rows to Arrow (records.py, day_buffer.py)", ("pipelines/records.py", "pipelines/day_buffer.py")),
    ("spool (pipelines/spool.py)", ("pipelines/spool.py",)),
    ("row checks and seen ids", ("_checked_rows", "_unique", "SeenIds")),
    ("window planner", ("pipelines/windows.py",)),
    ("partition writes (Parquet) and ledger", ("pipelines/lake.py", "pipelines/ledger.py")),
    ("uniqueness check (DuckDB)", ("duplicate_keys",)),
    ("warehouse views (DuckDB)", ("pipelines/warehouse.py",)),
    ("report (its queries and figures: DuckDB, matplotlib)", ("pipelines/report.py",)),
    ("HTTP (httpx, httpcore, anyio, h11)", ("httpx/", "httpcore/", "anyio/", "h11/")),
    ("our client (retries, stats, body limits)", ("pipelines/synctera/",)),
    ("asyncio event loop", ("asyncio/",)),
    ("Dagster (event log in SQLite, run machinery)", ("dagster/", "sqlalchemy/", "dagster_shared/")),
    ("imports during the run", ("<frozen importlib",)),
]


def shares(lines: Sequence[str]) -> tuple[Counter[str], int]:
    totals: Counter[str] = Counter()
    samples = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        weight = int(count)
        samples += weight
        frames = stack.split(";")
        if any("pipelines/spool.py" in frame for frame in frames):
            totals["spool (pipelines/spool.py)"] += weight  # its day cuts run in lake.py's helper
            continue
        for frame in reversed(frames):
            component = next((name for name, keys in COMPONENTS if any(k in frame for k in keys)), None)
            if component is not None:
                totals[component] += weight
                break
        else:
            totals["other"] += weight
    return totals, samples


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spy_summary", description=__doc__.split("\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    args = parser.parse_args(argv)
    totals, samples = shares(args.profile.read_text().splitlines())
    print(f"{samples:,} samples")
    for name, count in totals.most_common():
        print(f"{100 * count / samples:5.1f} %  {name}")


if __name__ == "__main__":
    main()
