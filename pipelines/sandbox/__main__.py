"""``python -m pipelines.sandbox``: serve a Synctera External Accounts sandbox on loopback.

Examples:
    python -m pipelines.sandbox --port 8765
    python -m pipelines.sandbox --port 0 --port-file /tmp/port --accounts 200 --history-days 400
    python -m pipelines.sandbox --latency balance=0.4 --latency transactions=0.08 --fault 503=0.02
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

from .app import Sandbox
from .config import DENSITY_PROFILES, ENDPOINTS, FAULT_KINDS, SandboxConfig
from .server import serve_forever


def _pairs(values: Sequence[str], flag: str) -> dict[str, float]:
    pairs = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            if not sep:
                raise ValueError
            pairs[name] = float(number)
        except ValueError:
            raise SystemExit(f"{flag} expects NAME=NUMBER, got {value!r}") from None
    return pairs


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, SandboxConfig]:
    parser = argparse.ArgumentParser(prog="python -m pipelines.sandbox", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to bind; 0 picks a free one (default: 8765)"
    )
    parser.add_argument("--port-file", type=Path, help="write the bound port to this file once listening")
    parser.add_argument("--seed", type=int, default=7, help="data seed: the same seed gives the same data")
    parser.add_argument("--accounts", type=int, default=40, help="number of generated external accounts")
    parser.add_argument("--history-days", type=int, default=730, help="days of transaction history")
    parser.add_argument(
        "--density", choices=DENSITY_PROFILES, default="default", help="transactions per day profile"
    )
    parser.add_argument(
        "--today", type=dt.date.fromisoformat, help="the sandbox's today (YYYY-MM-DD; default: UTC today)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SYNCTERA_SANDBOX_API_KEY", "sandbox-api-key"),
        help="bearer key the sandbox accepts (default: $SYNCTERA_SANDBOX_API_KEY or sandbox-api-key)",
    )
    parser.add_argument(
        "--latency", action="append", default=[], metavar="ENDPOINT=SECONDS",
        help=f"added latency per call; endpoints: {', '.join(ENDPOINTS)}",
    )  # fmt: skip
    parser.add_argument(
        "--fault", action="append", default=[], metavar="KIND=RATE",
        help=f"probability of a fault per request; kinds: {', '.join(FAULT_KINDS)}",
    )  # fmt: skip
    parser.add_argument(
        "--fault-endpoint", action="append", default=None, choices=ENDPOINTS,
        help="limit random faults to these endpoints (repeatable; default: all)",
    )  # fmt: skip
    parser.add_argument("--retry-after", type=int, default=1, help="seconds a 429 asks the client to wait")
    parser.add_argument("--slow-seconds", type=float, default=2.0, help="delay of a 'slow' fault")
    parser.add_argument("--huge-bytes", type=int, default=80 * 1024 * 1024, help="padding of a 'huge' answer")
    parser.add_argument(
        "--drift-account", type=int, default=None, metavar="INDEX",
        help="this account's balance drifts from its transactions (the reconciliation check fails on it)",
    )  # fmt: skip
    parser.add_argument(
        "--max-in-flight", type=int, default=None, metavar="N",
        help="the server's limit on requests at once; above it: 429 with Retry-After",
    )  # fmt: skip
    parser.add_argument(
        "--rate-limit", type=float, default=None, metavar="R",
        help="the server's limit in requests per second; above it: 429 with Retry-After",
    )  # fmt: skip
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")
    args = parser.parse_args(argv)
    try:
        config = SandboxConfig(
            seed=args.seed,
            accounts=args.accounts,
            history_days=args.history_days,
            density=args.density,
            today=args.today,
            api_key=args.api_key,
            latency=_pairs(args.latency, "--latency"),
            fault_rates=_pairs(args.fault, "--fault"),
            fault_endpoints=frozenset(args.fault_endpoint) if args.fault_endpoint else None,
            retry_after_seconds=args.retry_after,
            slow_seconds=args.slow_seconds,
            huge_bytes=args.huge_bytes,
            drift_account=args.drift_account,
            max_in_flight=args.max_in_flight,
            rate_limit=args.rate_limit,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return args, config


def main(argv: Sequence[str] | None = None) -> None:
    args, config = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C / SIGINT is the way to stop it
        serve_forever(
            Sandbox(config),
            host=args.host,
            port=args.port,
            port_file=args.port_file,
            log_level=args.log_level,
        )


if __name__ == "__main__":
    main()
