"""``make run``: the main job against the built-in sandbox.

Until the Dagster ingestion lands (issue "Ingestion pipeline"), this runs the client end to end over
real HTTP: it starts the sandbox on a free loopback port, lists every account, reads each balance
and the last 30 complete days of transactions, and prints what it saw — including the windows that
hit the 500-row cap, which only the pipeline's window splitting can recover.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging

from pipelines.sandbox import Sandbox, SandboxConfig, running
from pipelines.synctera import TRANSACTIONS_CAP, ApiError, SyncteraClient

log = logging.getLogger("pipelines.run")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30, help="complete days to read (default: 30)")
    parser.add_argument("--accounts", type=int, default=40, help="sandbox accounts (default: 40)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    sandbox = Sandbox(SandboxConfig(accounts=args.accounts))
    end = sandbox.today  # exclusive: the last complete day is yesterday
    start = end - dt.timedelta(days=args.days)
    with (
        running(sandbox) as server,
        SyncteraClient(base_url=server.base_url, api_key=server.api_key) as client,
    ):
        log.info("sandbox at %s; reading %s .. %s", server.base_url, start, end - dt.timedelta(days=1))
        accounts = list(client.iter_external_accounts(include_history=True))
        rows, capped, balance_errors = 0, 0, 0
        for account in accounts:
            window = client.get_external_account_transactions(account.id, start_date=start, end_date=end)
            rows += len(window.transactions)
            capped += len(window.transactions) == TRANSACTIONS_CAP
            try:
                client.get_external_account_balance(account.id, max_age=3600)
            except ApiError as exc:
                balance_errors += 1
                log.info("balance of %s unavailable: %s", account.id, exc)
        stats = client.stats_snapshot()
    print(f"accounts listed:            {len(accounts)}")
    print(f"transactions read:          {rows}")
    print(f"windows at the 500-row cap: {capped} (of {len(accounts)}; these are truncated)")
    print(f"balances unavailable:       {balance_errors}")
    print(f"requests sent:              {stats.total_requests} ({stats.total_retries} retries)")


if __name__ == "__main__":
    main()
