"""The naive baseline: one call per account-day, one account at a time, as a first version would.

It asks the sandbox (in its own process, zero latency) for a sample of accounts and times the calls;
realistic time adds the transactions latency per call, since nothing overlaps. What it loses is
computed from the sandbox's truth over the whole workload: every day of 500 rows or more comes back
as 500 with nothing to say it is short.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from bench.pipeline_bench import LATENCY, sandbox_args
from pipelines.sandbox import Sandbox, SandboxConfig
from pipelines.sandbox.process import sandbox_process
from pipelines.synctera import TRANSACTIONS_CAP, SyncteraClient

ONE_DAY = dt.timedelta(days=1)


def naive_run(accounts: int, days: int, *, sample: int, seed: int = 7) -> dict[str, Any]:
    key = "bench-key"
    with (
        sandbox_process(sandbox_args(accounts, days, seed, realistic=False), api_key=key) as base_url,
        SyncteraClient(base_url=base_url, api_key=key) as client,
    ):
        ids = [a.id for a in client.iter_external_accounts()][:sample]
        today = dt.datetime.now(dt.UTC).date()
        start = today - days * ONE_DAY
        calls, began = 0, time.perf_counter()
        for account_id in ids:
            for n in range(days):
                day = start + n * ONE_DAY
                client.get_external_account_transactions(account_id, start_date=day, end_date=day + ONE_DAY)
                calls += 1
        per_call = (time.perf_counter() - began) / max(1, calls)
    truth = Sandbox(SandboxConfig(seed=seed, accounts=accounts, history_days=days + 30))
    total = lost = capped = 0
    for account in truth.accounts():
        for count in truth.true_day_counts(account["id"], truth.today - days * ONE_DAY, days):
            total += count
            if count >= TRANSACTIONS_CAP:
                capped += 1
                lost += count - TRANSACTIONS_CAP
    return {
        "seconds_per_call_zero": per_call,
        "seconds_per_call_realistic": per_call + LATENCY["transactions"],
        "capped_days_share": capped / (accounts * days),
        "rows_lost_share": lost / max(1, total),
    }
