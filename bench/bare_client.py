"""The CPU floor: a bare client that GETs the responses the pipeline got and only decodes the JSON.

    python -m bench.bare_client BASE_URL PLAN.json CONCURRENCY [--strict DIR]   (key in BENCH_API_KEY)

It lists the accounts (limit 100, to the last page), asks every transactions window of the plan
(the pipeline's own ledger) and every account's balance, with the same httpx client settings and
concurrency as the pipeline, and prints its CPU seconds as JSON. No checks, no Arrow, no Parquet,
no Dagster: anything the pipeline spends above this is its own.

``--strict DIR`` is the least a correct pipeline does on top: every body decoded and checked as the
pipeline does (the same decoders: msgspec for transactions, pydantic for pages and balances), the
rows to Arrow with the lake's schema (the pipeline's own builder), and written as Parquet, one
zstd file per day, into DIR. No planner, no spool, no duplicate checks, no ledger, no Dagster. What
it costs above the bare client bounds how close to the bare floor any pipeline of these parts gets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from pipelines.spool import BUFFER_ROWS
from pipelines.synctera import sockets


async def replay(
    base_url: str, key: str, plan: dict[str, Any], concurrency: int, strict: Path | None = None
) -> dict[str, int]:
    if strict is not None:  # imported before the clock starts (see main), as the pipeline's are
        from pipelines.records import WindowRows, window_rows_table
        from pipelines.synctera import models
        from pipelines.synctera.rows import decode_transaction_batch
    parts: list[Any] = []
    tables: list[Any] = []
    buffered = [0]
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    slots = asyncio.Semaphore(concurrency)
    counts = {"requests": 0, "rows": 0}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as http:
        sockets.install(http)  # the pipeline's pool check (one poll per idle connection): same HTTP cost

        async def get(path: str, params: dict[str, str]) -> bytes:
            async with slots:
                response = await http.get(path, params=params)
            counts["requests"] += 1
            if strict is not None and response.status_code != 200:
                json.loads(response.content)  # a problem+json answer: read, as the pipeline does
                return b""
            return response.content

        token: str | None = None
        while True:
            content = await get(
                "/external_accounts", {"limit": "100", **({"page_token": token} if token else {})}
            )
            if strict is None:
                token = json.loads(content).get("next_page_token")
            else:
                token = models.ExternalAccountsList.model_validate_json(content).next_page_token
            if not token:
                break

        async def window(account: str, start: str, end: str) -> None:
            content = await get(
                f"/external_accounts/{account}/transactions", {"start_date": start, "end_date": end}
            )
            if strict is None:
                counts["rows"] += len(json.loads(content).get("transactions", []))
            elif content:
                rows = decode_transaction_batch(content).transactions
                parts.append(WindowRows(account, dt.datetime.now(dt.UTC), rows))
                counts["rows"] += len(rows)
                buffered[0] += len(rows)
                if buffered[0] >= BUFFER_ROWS:  # to Arrow, as the pipeline's spool does: no rows as objects
                    tables.append(window_rows_table(parts, run_id="bare"))
                    parts.clear()
                    buffered[0] = 0

        async def balance(account: str) -> None:
            content = await get(f"/external_accounts/{account}/balance", {"max_age": "86400"})
            if strict is None:
                json.loads(content)
            elif content:
                models.ExternalAccountBalance.model_validate_json(content)

        async with asyncio.TaskGroup() as group:
            for account, start, end in plan["windows"]:
                group.create_task(window(account, start, end))
            for account in plan["accounts"]:
                group.create_task(balance(account))
    if strict is not None:
        _write_days([*tables, window_rows_table(parts, run_id="bare")], strict)
    return counts


def _write_days(tables: list[Any], into: Path) -> None:
    """The rows sorted by date, one zstd Parquet file per day."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, [("date", "ascending")]))
    into.mkdir(parents=True, exist_ok=True)
    days = table.column("date").cast("int32").to_numpy()
    starts = [*np.flatnonzero(np.diff(days, prepend=days[0] - 1)).tolist(), len(days)]
    for start, end in itertools.pairwise(starts):
        day = table.slice(start, end - start)
        pq.write_table(day, into / f"{day.column('date')[0]}.parquet", compression="zstd")


def main() -> None:
    base_url, plan_path, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    strict = Path(sys.argv[5]) if sys.argv[4:5] == ["--strict"] else None
    with open(plan_path) as handle:
        plan = json.load(handle)
    if strict is not None:  # imported before the clock starts, as the pipeline's are
        import pyarrow.parquet  # noqa: F401

        import pipelines.records  # noqa: F401
    began, cpu = time.perf_counter(), time.process_time()
    counts = asyncio.run(replay(base_url, os.environ["BENCH_API_KEY"], plan, concurrency, strict))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "cpu_seconds": time.process_time() - cpu,
                "cpu_total_seconds": usage.ru_utime + usage.ru_stime,
                "wall_seconds": time.perf_counter() - began,
                **counts,
            }
        )
    )


if __name__ == "__main__":
    main()
