"""The CPU floor: a bare client that GETs the responses the pipeline got and only decodes the JSON.

    python -m bench.bare_client BASE_URL PLAN.json CONCURRENCY      (key in BENCH_API_KEY)

It lists the accounts (limit 100, to the last page), asks every transactions window of the plan
(the pipeline's own ledger) and every account's balance, with the same httpx client settings and
concurrency as the pipeline, and prints its CPU seconds as JSON. No checks, no Arrow, no Parquet,
no Dagster: anything the pipeline spends above this is its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

import httpx


async def replay(base_url: str, key: str, plan: dict[str, Any], concurrency: int) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    slots = asyncio.Semaphore(concurrency)
    counts = {"requests": 0, "rows": 0}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as http:

        async def get(path: str, params: dict[str, str]) -> Any:
            async with slots:
                response = await http.get(path, params=params)
            counts["requests"] += 1
            return json.loads(response.content)

        token: str | None = None
        while True:
            page = await get(
                "/external_accounts", {"limit": "100", **({"page_token": token} if token else {})}
            )
            token = page.get("next_page_token")
            if not token:
                break

        async def window(account: str, start: str, end: str) -> None:
            body = await get(
                f"/external_accounts/{account}/transactions", {"start_date": start, "end_date": end}
            )
            counts["rows"] += len(body.get("transactions", []))

        async def balance(account: str) -> None:
            await get(f"/external_accounts/{account}/balance", {"max_age": "86400"})

        async with asyncio.TaskGroup() as group:
            for account, start, end in plan["windows"]:
                group.create_task(window(account, start, end))
            for account in plan["accounts"]:
                group.create_task(balance(account))
    return counts


def main() -> None:
    base_url, plan_path, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(plan_path) as handle:
        plan = json.load(handle)
    began, cpu = time.perf_counter(), time.process_time()
    counts = asyncio.run(replay(base_url, os.environ["BENCH_API_KEY"], plan, concurrency))
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
