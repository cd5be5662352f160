"""Balances against transactions: does each account's balance move by exactly its posted transactions?

Between two error-free balance observations of an account, ``current`` must change by the net of
the posted transactions dated from the first observation's UTC date (inclusive) to the second's
(exclusive), in the balance's currency. Synctera's spec points to Plaid for balances, and Plaid's
amounts are positive for money out: on a deposit account money out lowers ``current``; on a credit
card, where ``current`` is what is owed, it raises it.

A pair is judged only once its days are settled: every day fetched completely (no capped day), at
least once after the daily lookback had passed (so late postings have landed), and with no pending
transaction left. Other pairs wait, and are counted, not failed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pipelines.lake import TABLES, Lake
from pipelines.warehouse import create_views, query

OWED_TYPES = frozenset({"CREDIT_CARD"})
"""Account types whose ``current`` is the amount owed (it rises with money out)."""

_PAIRS_SQL = """
WITH
obs AS (
    SELECT account_id, observed_at, date AS day, currency, "current"
    FROM balances WHERE error IS NULL AND "current" IS NOT NULL
),
pairs AS (
    SELECT * FROM (
        SELECT account_id,
               lag(observed_at) OVER w AS t1, lag(day) OVER w AS d1, lag("current") OVER w AS c1,
               lag(currency) OVER w AS currency1,
               observed_at AS t2, day AS d2, "current" AS c2, currency
        FROM obs WINDOW w AS (PARTITION BY account_id ORDER BY observed_at)
    ) WHERE t1 IS NOT NULL
),
fetched AS (  -- each account-day's latest fetch, by a window that was kept (not a capped one)
    SELECT account_id, day, fetched_at, status AS outcome FROM (
{completeness}
    )
),
pending AS (SELECT account_id, date AS day, count(*) AS n FROM transactions WHERE is_pending GROUP BY ALL),
days AS (
    SELECT p.account_id, p.t1,
           count(*) FILTER (f.outcome = 'complete' AND f.fetched_at::DATE - f.day > $settle AND pe.n IS NULL)
               AS settled,
           count(*) FILTER (f.outcome = 'flagged') AS flagged
    FROM pairs p
    JOIN fetched f ON f.account_id = p.account_id AND f.day >= p.d1 AND f.day < p.d2
    LEFT JOIN pending pe ON pe.account_id = f.account_id AND pe.day = f.day
    GROUP BY ALL
),
net AS (
    SELECT p.account_id, p.t1,
           coalesce(sum(t.amount) FILTER (NOT coalesce(t.is_pending, false)
                                          AND t.currency IS NOT DISTINCT FROM p.currency), 0) AS net,
           count(*) FILTER (t.currency IS DISTINCT FROM p.currency) AS other_currency
    FROM pairs p
    JOIN transactions t ON t.account_id = p.account_id AND t.date >= p.d1 AND t.date < p.d2
    GROUP BY ALL
),
kinds AS (SELECT account_id, arg_max(type, observed_at) AS type FROM external_accounts GROUP BY ALL)
SELECT p.account_id, p.t1, p.d1, p.c1, p.currency1, p.t2, p.d2, p.c2, p.currency,
       coalesce(d.settled, 0), coalesce(d.flagged, 0), coalesce(n.net, 0), coalesce(n.other_currency, 0),
       k.type
FROM pairs p
LEFT JOIN days d USING (account_id, t1)
LEFT JOIN net n USING (account_id, t1)
LEFT JOIN kinds k USING (account_id)
ORDER BY p.account_id, p.t1
"""


@dataclass(frozen=True)
class Mismatch:
    """A pair of observations whose balance moved by something other than its transactions."""

    account_id: str
    currency: str | None
    first_observed: dt.datetime
    second_observed: dt.datetime
    balance_change: int
    expected_change: int  # from the posted transactions between them
    reason: str

    @property
    def difference(self) -> int:
        return self.balance_change - self.expected_change


@dataclass(frozen=True)
class Reconciliation:
    pairs: int  # consecutive error-free observations of one account
    reconciled: int
    mismatches: tuple[Mismatch, ...]
    waiting: int  # pairs whose days are not settled yet (recent, pending, or not fetched)
    unprovable: int  # pairs with a capped day: their transactions cannot be proven complete

    @property
    def judged(self) -> int:
        return self.reconciled + len(self.mismatches)

    def sentence(self) -> str:
        if not self.pairs:
            return "No account has two error-free balance observations yet: nothing to reconcile."
        head = (
            f"{self.reconciled} of {self.judged} settled balance changes equal their posted transactions"
            if self.judged
            else "No balance change is settled yet"
        )
        tail = [f"{self.waiting} wait for their days to settle"] if self.waiting else []
        if self.unprovable:
            tail.append(f"{self.unprovable} span a capped day")
        if self.mismatches:
            worst = max(self.mismatches, key=lambda m: abs(m.difference))
            tail.append(
                f"{len(self.mismatches)} do not reconcile (largest: {worst.account_id} off by "
                f"{worst.difference:+,} minor units)"
            )
        return head + (": " + "; ".join(tail) if tail else "") + "."


def reconcile(lake: Lake, *, lookback_days: int) -> Reconciliation:
    """Every pair of consecutive error-free balance observations, checked against the transactions."""
    pairs_sql = _PAIRS_SQL.replace("{completeness}", query("completeness"))

    def pairs(config: dict[str, Any]) -> list[tuple[Any, ...]]:
        connection = lake.duckdb(config)
        try:
            connection.execute("SET TimeZone = 'UTC'")
            create_views(connection, lake)
            with lake.reading(*TABLES):  # not while a run replaces partitions
                return connection.execute(pairs_sql, {"settle": lookback_days}).fetchall()
        finally:
            connection.close()

    rows = lake.read_bounded(pairs)
    reconciled = waiting = unprovable = 0
    mismatches: list[Mismatch] = []
    for (
        account_id, t1, d1, c1, currency1, t2, d2, c2, currency, settled, flagged, net, other, kind,
    ) in rows:  # fmt: skip
        span = (d2 - d1).days
        if flagged:
            unprovable += 1
            continue
        if settled < span:
            waiting += 1
            continue
        expected = int(net) if kind in OWED_TYPES else -int(net)
        change = int(c2) - int(c1)
        reason = ""
        if currency1 != currency:
            reason = f"the balance's currency changed from {currency1} to {currency}"
        elif other:
            reason = f"{other} transactions in another currency than {currency}"
        elif change != expected:
            reason = "the balance moved by other than its posted transactions"
        if reason:
            mismatches.append(Mismatch(account_id, currency, t1, t2, change, expected, reason))
        else:
            reconciled += 1
    return Reconciliation(len(rows), reconciled, tuple(mismatches), waiting, unprovable)
