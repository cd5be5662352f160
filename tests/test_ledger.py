"""What the ledger of windows tells later runs: each account's rate, and the days fetched alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipelines import ledger
from pipelines.lake import Lake
from pipelines.transactions import WindowRecord
from pipelines.windows import Outcome, Window

DAY = dt.date(2026, 3, 10)
ONE_DAY = dt.timedelta(days=1)


def _record(start: dt.date, days: int, rows: int, outcome: Outcome, *, at: int) -> WindowRecord:
    fetched = dt.datetime(2026, 3, 20, at, tzinfo=dt.UTC)
    return WindowRecord("acc-1", Window(start, start + days * ONE_DAY), rows, outcome, 1, fetched)


def test_prior_days_are_the_latest_single_day_windows_not_capped_or_longer_ones(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    first = [
        _record(DAY, 3, 500, Outcome.CAPPED, at=1),  # proves nothing about one day
        _record(DAY, 1, 40, Outcome.COMPLETE, at=1),
        _record(DAY + ONE_DAY, 1, 500, Outcome.FLAGGED, at=1),
        _record(DAY + 2 * ONE_DAY, 5, 120, Outcome.COMPLETE, at=1),  # a sum over days: no day's count
    ]
    days = [DAY + n * ONE_DAY for n in range(7)]
    lake.replace_accounts(
        "transaction_windows", days, ledger.windows_table(first, run_id="r1"), accounts=["acc-1"]
    )
    later = [_record(DAY, 1, 480, Outcome.COMPLETE, at=2)]  # a later run's answer for the same day wins
    lake.replace_accounts(
        "transaction_windows", [DAY], ledger.windows_table(later, run_id="r2"), accounts=["acc-1"]
    )

    known = ledger.prior_days(lake, start=DAY, end=DAY + 7 * ONE_DAY)

    assert known == {"acc-1": {DAY: 480, DAY + ONE_DAY: 500}}
    assert ledger.prior_days(lake, start=DAY + 2 * ONE_DAY, end=DAY + 7 * ONE_DAY) == {}
