"""How close the adaptive concurrency limit comes to a server's own limit, and what it costs in 429s.

    python -m bench.adaptive --max-in-flight 8                 # a sandbox that takes 8 requests at once
    python -m bench.adaptive --max-in-flight 8 --fixed         # the same with a fixed limit (the ceiling)
    python -m bench.adaptive --max-in-flight 0 --ceiling 32    # no server limit: span / latency floor
    python -m bench.adaptive --max-in-flight 8 --compare       # one line each: adaptive, and fixed at
                                                               # the server's limit (known in advance)

Every account's transactions are fetched as the pipeline does (``fetch_all_accounts``, twice the
ceiling's accounts at once) from a sandbox in its own process whose transactions endpoint answers
after ``--latency`` seconds. With a server limit N the yardstick is N / latency requests a second;
without one, the latency floor: requests × latency / ceiling. The density is light by default so that
the sandbox's CPU, not its limit, is never what bounds the run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from pipelines.sandbox.process import sandbox_process
from pipelines.synctera import AsyncSyncteraClient
from pipelines.transactions import WindowRecord, fetch_all_accounts

KEY = "bench-key"
TODAY = dt.date(2026, 11, 20)


async def _fetch(base_url: str, *, ceiling: int, adaptive: bool, days: int) -> dict[str, Any]:
    async with AsyncSyncteraClient(
        base_url=base_url, api_key=KEY, max_concurrency=ceiling, adaptive=adaptive
    ) as client:
        account_ids = [a.id async for a in client.iter_external_accounts()]
        rows = 0

        def count(account_id: str, window: WindowRecord, kept: list[Any]) -> None:
            nonlocal rows
            rows += len(kept)

        listed = client.stats_snapshot()
        began = time.monotonic()
        await fetch_all_accounts(
            client,
            account_ids,
            TODAY - dt.timedelta(days=days),
            TODAY,
            prior_rates={},
            concurrency=2 * ceiling,
            sink=count,
        )
        seconds = time.monotonic() - began
        stats = client.stats_snapshot()
    requests = stats.total_requests - listed.total_requests
    throttled = stats.total_throttled - listed.total_throttled
    return {
        "accounts": len(account_ids),
        "rows": rows,
        "requests": requests,
        "throttled": throttled,
        "seconds": seconds,
        "final_limit": stats.concurrency_limit,
        "peak_in_flight": stats.peak_in_flight,
    }


def run(
    *,
    max_in_flight: int,
    latency: float,
    ceiling: int,
    adaptive: bool,
    accounts: int,
    days: int,
    density: str,
) -> dict[str, Any]:
    args = ["--accounts", str(accounts), "--history-days", str(days + 30), "--today", TODAY.isoformat()]
    args += ["--density", density, "--latency", f"transactions={latency}"]
    if max_in_flight:
        args += ["--max-in-flight", str(max_in_flight)]
    with sandbox_process(args, api_key=KEY) as base_url:
        figures = asyncio.run(_fetch(base_url, ceiling=ceiling, adaptive=adaptive, days=days))
    served = figures["requests"] - figures["throttled"]
    figures["served_per_second"] = served / figures["seconds"]
    figures["throttled_share"] = figures["throttled"] / max(1, figures["requests"])
    if max_in_flight:
        figures["limit_per_second"] = max_in_flight / latency
        figures["throughput_of_limit"] = figures["served_per_second"] / figures["limit_per_second"]
    else:
        figures["latency_floor_seconds"] = served * latency / ceiling
        figures["span_over_floor"] = figures["seconds"] / figures["latency_floor_seconds"]
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.adaptive", description=__doc__.split("\n")[0])
    parser.add_argument("--max-in-flight", type=int, default=8, help="the server's limit (0: none)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per transactions call")
    parser.add_argument("--ceiling", type=int, default=32, help="the client's max_concurrency")
    parser.add_argument("--fixed", action="store_true", help="a fixed limit at the ceiling, for comparison")
    parser.add_argument("--accounts", type=int, default=1500)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--density", default="light")
    parser.add_argument("--compare", action="store_true", help="adaptive, then fixed at the server's limit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the retries of 429s would flood the terminal
    if args.compare:
        for adaptive, ceiling in ((True, args.ceiling), (False, args.max_in_flight or args.ceiling)):
            figures = run(
                max_in_flight=args.max_in_flight,
                latency=args.latency,
                ceiling=ceiling,
                adaptive=adaptive,
                accounts=args.accounts,
                days=args.days,
                density=args.density,
            )
            print(_line(args.max_in_flight, args.latency, adaptive, ceiling, figures), flush=True)
        return
    figures = run(
        max_in_flight=args.max_in_flight,
        latency=args.latency,
        ceiling=args.ceiling,
        adaptive=not args.fixed,
        accounts=args.accounts,
        days=args.days,
        density=args.density,
    )
    if args.json:
        print(json.dumps(figures))
        return
    for name, value in figures.items():
        print(f"{name:<24} {value:.3f}" if isinstance(value, float) else f"{name:<24} {value}")


def _line(max_in_flight: int, latency: float, adaptive: bool, ceiling: int, f: dict[str, Any]) -> str:
    mode = f"adaptive ≤{ceiling}" if adaptive else f"fixed {ceiling}"
    head = f"N={max_in_flight or '-'} latency={latency}s {mode:<13} requests={f['requests']}"
    head += f" 429={f['throttled']} ({100 * f['throttled_share']:.2f}%) served/s={f['served_per_second']:.1f}"
    tail = f" limit at end={f['final_limit']:.1f} peak in flight={f['peak_in_flight']}"
    if max_in_flight:
        return f"{head} of N/latency={100 * f['throughput_of_limit']:.1f}%{tail}"
    return f"{head} span/floor={f['span_over_floor']:.2f}{tail}"


if __name__ == "__main__":
    main()
