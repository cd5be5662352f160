"""One worker of the scale-out budget test: calls the sandbox through a Redis budget until it is killed.

``python -m tests.budget_worker BASE_URL API_KEY REDIS_URL KEY RATE MODE``: MODE ``async`` runs 8
tasks on one AsyncSyncteraClient, ``threads`` 8 threads on one SyncteraClient. Each successful call
prints the wall-clock time it completed, one line each, so the test counts calls per second.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
import time

from pipelines.synctera import AsyncSyncteraClient, SyncteraClient
from pipelines.synctera.redis_budget import RedisRateBudget

CALLERS = 8


_OUTPUT = threading.Lock()  # print() writes the text and the newline apart: threads would interleave


def _report() -> None:
    with _OUTPUT:
        sys.stdout.write(f"{time.time():.6f}\n")
        sys.stdout.flush()


async def _run_async(base_url: str, api_key: str, budget: RedisRateBudget) -> None:
    async with AsyncSyncteraClient(
        base_url=base_url, api_key=api_key, budget=budget, max_concurrency=CALLERS
    ) as client:

        async def caller() -> None:
            while True:
                await client.list_external_accounts(limit=1)
                _report()

        await asyncio.gather(*(caller() for _ in range(CALLERS)))


def _run_threads(base_url: str, api_key: str, budget: RedisRateBudget) -> None:
    failures: queue.Queue[BaseException] = queue.Queue()
    with SyncteraClient(base_url=base_url, api_key=api_key, budget=budget, max_concurrency=CALLERS) as client:

        def caller() -> None:
            try:
                while True:
                    client.list_external_accounts(limit=1)
                    _report()
            except BaseException as exc:
                failures.put(exc)

        for _ in range(CALLERS):
            threading.Thread(target=caller, daemon=True).start()
        raise failures.get()  # the first failure ends the worker; until then it runs


def main(argv: list[str]) -> None:
    base_url, api_key, redis_url, key, rate, mode = argv
    budget = RedisRateBudget.from_url(redis_url, key, float(rate))
    if mode == "async":
        asyncio.run(_run_async(base_url, api_key, budget))
    else:
        _run_threads(base_url, api_key, budget)


if __name__ == "__main__":
    main(sys.argv[1:])
