"""``make run``: the main job on the built-in sandbox, exactly as an operator would run it.

Starts the sandbox on a free loopback port, backfills the last 30 complete days with the Dagster CLI
(``dagster asset materialize --partition-range``, one run), stops the sandbox, and prints what the
warehouse holds and one example query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from pipelines import progress, warehouse
from pipelines.lake import Lake, lake_from_env
from pipelines.sandbox.process import sandbox_process
from pipelines.settings import REPO_ROOT, SANDBOX_DEFAULT_KEY

EXAMPLE_QUERY = """
SELECT merchant_name, count(*) AS transactions, sum(amount) / 100.0 AS spent
FROM transactions
WHERE amount > 0 AND date >= current_date - INTERVAL 30 DAY
GROUP BY merchant_name
ORDER BY spent DESC
LIMIT 5
""".strip()


INSTANCE_SETTINGS = Path(__file__).with_name("dagster.yaml")

STEP = re.compile(r"(?P<step>[\w.\[\]-]+) - $")
"""The step that logged a line: the last field of Dagster's prefix, just before the message."""


def prepare_dagster_home(dagster_home: Path) -> None:
    """Create ``DAGSTER_HOME`` with the project's instance settings, keeping any the user wrote."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    settings = dagster_home / "dagster.yaml"
    if not settings.exists():
        shutil.copyfile(INSTANCE_SETTINGS, settings)


def backfill_command(start: dt.date, end: dt.date, *, select: str = "*") -> list[str]:
    """What an operator types to backfill ``start..end`` (inclusive) as one run."""
    return [
        str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
        "-m", "pipelines.definitions", "--select", select,
        "--partition-range", f"{start.isoformat()}...{end.isoformat()}",
    ]  # fmt: skip


def backfill(*, base_url: str, start: dt.date, end: dt.date, dagster_home: Path) -> None:
    prepare_dagster_home(dagster_home)
    env = {
        **os.environ,
        "SYNCTERA_BASE_URL": base_url,
        "SYNCTERA_API_KEY": SANDBOX_DEFAULT_KEY,
        "DAGSTER_HOME": str(dagster_home),
        "PYTHONWARNINGS": "ignore",  # Dagster's beta/superseded notices are not the user's concern here
        "PYTHONUNBUFFERED": "1",  # progress lines as they happen, not when a buffer fills
    }
    command = [
        *backfill_command(start, end),
        "--config-json", '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}',
    ]  # fmt: skip
    with subprocess.Popen(  # noqa: S603 - our own fixed argv
        command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as run:
        assert run.stdout is not None
        show_progress(run.stdout)
    if run.returncode:
        raise subprocess.CalledProcessError(run.returncode, command)


def show_progress(lines: Iterable[str], *, interactive: bool | None = None) -> None:
    """The run's log as it comes. On a terminal each step's progress lines become a bar, closed once
    its phase is done so that later lines scroll below it; elsewhere (a pipe, a file, a CI log) the
    progress lines stay lines, since a bar redrawn in a file is noise. ``interactive``: None asks
    whether both stdout (the lines) and stderr (the bars) are terminals."""
    if interactive is None:
        interactive = sys.stdout.isatty() and sys.stderr.isatty()
    bars: dict[tuple[str, str], tqdm[NoReturn]] = {}
    # Each step's counters when its bar closed: the phase's closing line repeats them.
    finished: dict[tuple[str, str], tuple[str | None, ...]] = {}
    try:
        for line in lines:
            found = progress.LINE.search(line)
            if found is None or not interactive:
                tqdm.write(line.rstrip())
                continue
            what, done, total = found["what"], int(found["done"]), int(found["total"])
            # Dagster's log prefix ends with the step ("transactions.shard_1_of_4 - "): shards that
            # run side by side (Celery) keep a bar each.
            step = STEP.search(line, 0, found.start())
            key = (step["step"] if step else "", what)
            counters = (found["total"], found["rows"], found["calls"])
            bar = bars.get(key)
            if bar is None:
                if done >= total and finished.get(key) == counters:
                    continue
                # Started where the run already is, so the rate counts only what the bar saw.
                bar = tqdm(total=total, initial=done, desc=what, unit=found["unit"][:-1])
                bars[key] = bar
            bar.update(done - bar.n)
            bar.set_postfix_str(
                ", ".join(f"{found[k]} {k}" for k in ("rows", "calls") if found[k] is not None)
            )
            if done >= total:
                bars.pop(key).close()
                finished[key] = counters
    finally:
        for bar in bars.values():
            bar.close()


def summary(lake: Lake, start: dt.date, end: dt.date) -> str:
    with warehouse.reading(lake) as connection:
        where = f" (views over {lake.location})" if lake.store else ""
        lines = ["", f"Warehouse {lake.root / warehouse.WAREHOUSE}{where}:"]
        for table in ("external_accounts", "balances", "transactions", "transaction_windows"):
            # Table names are code constants, not input.
            (count,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)  # noqa: S608
            lines.append(f"  {table:<20} {count:>9,} rows")
        calls, capped, flagged = connection.execute(
            "SELECT count(*), count(*) FILTER (outcome = 'capped'), count(*) FILTER (outcome = 'flagged') "
            "FROM transaction_windows WHERE start_date BETWEEN ? AND ?",
            [start, end],
        ).fetchone() or (0, 0, 0)
        lines.append(
            f"  transaction calls {calls}, windows split {capped}, incomplete account-days {flagged}"
        )
        lines += [
            "",
            f"Example query (duckdb -readonly {lake.root / warehouse.WAREHOUSE}):",
            EXAMPLE_QUERY,
            "",
        ]
        result = connection.execute(EXAMPLE_QUERY)
        names = [d[0] for d in result.description]
        lines.append("  " + " | ".join(f"{n:>18}" for n in names))
        lines += ["  " + " | ".join(f"{v!s:>18}" for v in row) for row in result.fetchall()]
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30, help="complete days to backfill (default: 30)")
    parser.add_argument("--accounts", type=int, default=40, help="sandbox accounts (default: 40)")
    args = parser.parse_args()
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - dt.timedelta(days=args.days), today - dt.timedelta(days=1)
    with sandbox_process(["--accounts", str(args.accounts)], api_key=SANDBOX_DEFAULT_KEY) as base_url:
        backfill(base_url=base_url, start=start, end=end, dagster_home=REPO_ROOT / ".dagster")
    sys.stdout.write(summary(lake_from_env(), start, end) + "\n")


if __name__ == "__main__":
    main()
