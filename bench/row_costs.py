"""What each step from bytes to Parquet costs per row, on the sandbox's own transaction bodies.

    python -m bench.row_costs [--accounts 200] [--days 90]

Fetches every account's transactions once in 30-day windows (under the cap or not: only the bodies
matter), then times in this process, CPU µs per row, each step alone over the same bodies:
``json.loads`` (what the bare client does), the pipeline's checked decode (``decode_transaction_batch``)
with its result dropped at once, the same with the rows kept until they become Arrow (as the spool's
buffer keeps them), the rows to Arrow (``window_rows_table``), and Arrow to Parquet; each the median
of five. HTTP is left out: it is the same on both sides of the CPU ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import io
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pyarrow.parquet as pq

from bench.pipeline_bench import sandbox_args
from pipelines.records import WindowRows, window_rows_table
from pipelines.sandbox.process import sandbox_process
from pipelines.spool import BUFFER_ROWS
from pipelines.synctera.rows import decode_transaction_batch

KEY = "bench-key"


def fetch_bodies(base_url: str, accounts: int, days: int) -> list[tuple[str, bytes]]:
    end = dt.date.today()
    bodies = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        ids: list[str] = []
        token = None
        while True:
            params = {"limit": 100, **({"page_token": token} if token else {})}
            page = http.get("/external_accounts", params=params).json()
            ids += [a["id"] for a in page["external_accounts"]]
            token = page.get("next_page_token")
            if not token:
                break
        for account in ids[:accounts]:
            for offset in range(0, days, 30):
                start = end - dt.timedelta(days=days - offset)
                stop = start + dt.timedelta(days=30)
                window = {"start_date": start.isoformat(), "end_date": stop.isoformat()}
                answer = http.get(f"/external_accounts/{account}/transactions", params=window)
                if answer.status_code == 200:
                    bodies.append((account, answer.content))
    return bodies


def cpu_us_per_row(step: Callable[[], Any], rows: int, repeats: int = 5) -> float:
    """The median of ``repeats`` runs: the first of a process pays one-time costs (Arrow's first
    string conversion alone is ~0.1 s) that a run amortises over millions of rows."""
    costs = []
    for _ in range(repeats):
        gc.collect()
        began = time.process_time()
        step()
        costs.append((time.process_time() - began) / rows * 1e6)
    return statistics.median(costs)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.row_costs", description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args(argv)
    with sandbox_process(sandbox_args(args.accounts, args.days, 7, False), api_key=KEY) as base_url:
        bodies = fetch_bodies(base_url, args.accounts, args.days)
    rows = sum(len(json.loads(body)["transactions"]) for _, body in bodies)
    now = dt.datetime.now(dt.UTC)

    def loads() -> None:
        for _, body in bodies:
            json.loads(body)

    def decode_dropped() -> None:
        for _, body in bodies:
            decode_transaction_batch(body)

    parts: list[WindowRows] = []

    def decode_kept() -> None:
        parts.clear()
        for account, body in bodies:
            parts.append(WindowRows(account, now, decode_transaction_batch(body).transactions))

    tables: list[Any] = []

    def to_arrow() -> None:
        tables.clear()
        batch: list[WindowRows] = []
        held = 0
        for part in parts:
            batch.append(part)
            held += len(part.rows)
            if held >= BUFFER_ROWS:
                tables.append(window_rows_table(batch, run_id="bench"))
                batch, held = [], 0
        tables.append(window_rows_table(batch, run_id="bench"))

    def to_parquet() -> None:
        for table in tables:
            pq.write_table(table, io.BytesIO(), compression="zstd")

    costs = {
        "json.loads (the bare client)": cpu_us_per_row(loads, rows),
        "checked decode, dropped": cpu_us_per_row(decode_dropped, rows),
        "checked decode, rows kept": cpu_us_per_row(decode_kept, rows),
        "rows to Arrow (window_rows_table)": cpu_us_per_row(to_arrow, rows),
        "Arrow to Parquet (zstd)": cpu_us_per_row(to_parquet, rows),
    }
    print(f"{rows:,} rows in {len(bodies):,} bodies; CPU µs per row:")
    for name, cost in costs.items():
        print(f"  {name:<36} {cost:6.2f}")


if __name__ == "__main__":
    main()
