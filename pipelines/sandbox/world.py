"""The sandbox's deterministic data: customers, accounts, transactions and balances from a seed.

Accounts are made at start-up (cheap); each account's daily transaction counts are drawn lazily,
once, as one vector; the transactions of one account-day are generated on demand from a seed of
(seed, account, date), so thousands of accounts with years of history cost little memory. The same
functions answer the HTTP routes and the ground-truth API used by tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import SandboxConfig

CAP = 500
SPIKE_SIZES = (499, 500, 501, 750)
"""Planted days at the cap's edges: 499 fits in one call, 500 is capped exactly, more is truncated."""

FUTURE_DAYS = 60
"""How far past start-up "today" the counts reach, so that a test may move today forward."""

ACCOUNT_TYPES = (
    ("CHECKING", 45),
    ("SAVINGS", 25),
    ("CREDIT_CARD", 15),
    ("MONEY_MARKET", 6),
    ("INVESTMENT_529", 4),
    ("OTHER", 5),
)
BANKS = ("First Sandbox Bank", "Loopback Credit Union", "Example Savings", "Test Federal", "Northwind Bank")
MERCHANTS = (
    ("Corner Grocery", ["Food and Drink", "Groceries"]),
    ("City Transit", ["Travel", "Public Transportation"]),
    ("Bean There Coffee", ["Food and Drink", "Coffee Shop"]),
    ("Streamflix", ["Service", "Subscription"]),
    ("Fuel Stop", ["Travel", "Gas Stations"]),
    ("Online Books", ["Shops", "Bookstores"]),
    ("Pharma Plus", ["Healthcare", "Pharmacies"]),
    ("Burger Barn", ["Food and Drink", "Restaurants"]),
    ("Hardware Hub", ["Shops", "Hardware Store"]),
    ("Power & Light Co", ["Service", "Utilities"]),
    ("Airline Express", ["Travel", "Airlines"]),
    ("Pet Palace", ["Shops", "Pets"]),
)
INCOME = (("Payroll Inc", ["Transfer", "Payroll"]), ("Interest", ["Interest", "Interest Earned"]))
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def stable_int(*parts: object) -> int:
    """A 64-bit integer determined only by ``parts`` (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def stable_uuid(*parts: object) -> str:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        chars.append(ALPHABET[rem])
    return "".join(chars)


DRIFT_CENTS = 1_234
"""How far the drifting account's balance moves each day, apart from its transactions."""

MAX_POSTING_LAG = 2
"""Days a transaction may post after its date; older days are complete."""


@dataclass(frozen=True)
class AccountProfile:
    """The hidden facts behind one generated account: how busy it is and how its balance behaves."""

    index: int
    id: str
    daily_mean: float
    balance_age_seconds: int
    requires_max_age: bool
    vendor_times_out: bool
    currency: str
    type: str


class World:
    """Deterministic data of one sandbox configuration."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.seed = config.seed
        self.today = config.resolved_today()
        self.first_day = self.today - dt.timedelta(days=config.history_days)
        self._last_day = self.today + dt.timedelta(days=FUTURE_DAYS)
        self.profiles: dict[str, AccountProfile] = {}
        self.accounts: list[dict[str, Any]] = []
        self._counts: dict[str, np.ndarray] = {}
        self._counts_lock = threading.Lock()
        self._nets: dict[tuple[str, dt.date], int] = {}
        customers = [self._customer(i) for i in range(max(1, config.accounts // 2))]
        for index in range(config.accounts):
            profile, record = self._account(index, customers)
            self.profiles[profile.id] = profile
            self.accounts.append(record)

    # --- accounts --------------------------------------------------------------------------------

    def _customer(self, index: int) -> tuple[str, str]:
        rng = random.Random(stable_int(self.seed, "customer", index))
        kind = "business_id" if rng.random() < 0.3 else "customer_id"
        return kind, stable_uuid(self.seed, "customer", index)

    def _account(self, index: int, customers: list[tuple[str, str]]) -> tuple[AccountProfile, dict[str, Any]]:
        rng = random.Random(stable_int(self.seed, "account", index))
        account_id = stable_uuid(self.seed, "account", index)
        owner_kind, owner_id = customers[rng.randrange(len(customers))]
        account_type = rng.choices([t for t, _ in ACCOUNT_TYPES], [w for _, w in ACCOUNT_TYPES])[0]
        status = rng.choices(["ACTIVE", "CLOSED", "DELETED"], [85, 8, 7])[0]
        currency = "USD" if rng.random() < 0.9 else "CAD"
        vendor = rng.choices(["PLAID", "FINICITY", "MANUAL"], [60, 25, 15])[0]
        verified = rng.random() < 0.92
        created = dt.datetime.combine(self.first_day, dt.time(9), dt.UTC) - dt.timedelta(
            days=rng.randrange(1, 400), seconds=rng.randrange(86400)
        )
        updated = created + dt.timedelta(days=rng.randrange(0, 30), seconds=rng.randrange(86400))
        bank = rng.choice(BANKS)
        owner = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        number = f"{rng.randrange(10**9, 10**10)}"
        record: dict[str, Any] = {
            "id": account_id,
            owner_kind: owner_id,
            "account_identifiers": {"number": number[-4:]},
            "account_owner_names": [owner] if rng.random() < 0.9 else [],
            "creation_time": _iso(created),
            "last_updated_time": _iso(updated),
            "routing_identifiers": {
                "bank_countries": ["CA"] if currency == "CAD" else ["US"],
                "bank_name": bank,
                **({"ach_routing_number": f"{rng.randrange(10**4):04d}"} if currency == "USD" else {}),
            },
            "status": status,
            "type": account_type,
            "verification": {
                "status": "VERIFIED" if verified else "UNVERIFIED",
                "vendor": vendor,
                **({"creation_time": _iso(created), "last_updated_time": _iso(updated)} if verified else {}),
            },
            "currency": currency,
            "name": f"{bank} {account_type.replace('_', ' ').title()}",
            "nickname": f"{owner.split()[0]}'s {account_type.lower().replace('_', ' ')}",
            "tenant": "sandbox_tenant",
            "metadata": {"sandbox_index": index},
            "vendor_data": {
                "account_number_mask": number[-4:],
                "institution_id": f"ins_{stable_int(bank) % 1000}",
            },
        }
        if status == "DELETED":
            record["deletion_time"] = _iso(updated + dt.timedelta(days=1))
        if vendor != "MANUAL" and rng.random() < 0.3:
            record["vendor_info"] = {
                "content_type": "application/json",
                "vendor": vendor,
                "json": {"account_id": _base62(rng.getrandbits(128), 20), "subtype": account_type.lower()},
            }
        # Accounts 4, 5 and 6 always have the balance faults, so that even a small sandbox shows them.
        age_class = 0.99 if index == 5 else rng.random()
        if age_class < 0.8:
            age = rng.randrange(5, 600)
        elif age_class < 0.95:
            age = rng.randrange(2 * 3600, 3 * 86400)
        else:
            age = rng.randrange(5 * 86400, 30 * 86400)
        profile = AccountProfile(
            index=index,
            id=account_id,
            daily_mean=self._daily_mean(rng),
            balance_age_seconds=age,
            requires_max_age=index == 6 or rng.random() < 0.1,
            vendor_times_out=index == 4 or rng.random() < 0.03,
            currency=currency,
            type=account_type,
        )
        return profile, record

    def _daily_mean(self, rng: random.Random) -> float:
        density = self.config.density
        if density == "empty":
            return 0.0
        if density == "light":
            return rng.uniform(0.5, 3.0)
        if density == "heavy":
            return rng.uniform(100.0, 300.0)
        roll = rng.random()
        if roll < 0.05:
            return 0.0
        if roll < 0.70:
            return rng.uniform(0.3, 5.0)
        if roll < 0.90:
            return rng.uniform(8.0, 40.0)
        return rng.uniform(60.0, 180.0)

    # --- transaction counts --------------------------------------------------------------------

    def _count_vector(self, account_id: str) -> np.ndarray:
        counts = self._counts.get(account_id)
        if counts is not None:
            return counts
        profile = self.profiles[account_id]
        days = (self._last_day - self.first_day).days + 1
        rng = np.random.default_rng(stable_int(self.seed, "counts", profile.index))
        weekday = np.array([(self.first_day + dt.timedelta(days=d)).weekday() for d in range(days)])
        means = profile.daily_mean * np.where(weekday >= 5, 0.6, 1.0)
        counts = rng.poisson(means).astype(np.int64)
        if self.config.density == "default":
            if profile.daily_mean > 0:
                spikes = rng.random(days) < 0.002
                counts[spikes] = rng.choice(SPIKE_SIZES, size=int(spikes.sum()))
            # The cap's edge cases in recent history, so that a 30-day run meets them:
            # account 1 has a 499-day, account 2 a 500-day, account 3 a 750-day.
            planted = {1: (3, 499), 2: (10, 500), 3: (17, 750)}.get(profile.index)
            if planted is not None and planted[0] < self.config.history_days:
                days_ago, size = planted
                counts[(self.today - dt.timedelta(days=days_ago) - self.first_day).days] = size
        with self._counts_lock:
            self._counts.setdefault(account_id, counts)
        return self._counts[account_id]

    def visible_count(self, account_id: str, day: dt.date, *, today: dt.date) -> int:
        """``len(transactions_of_day(...))``, without building the rows when the day is settled."""
        if (today - day).days >= MAX_POSTING_LAG:
            return self.generated_count(account_id, day)
        return len(self.transactions_of_day(account_id, day, today=today))

    def generated_count(self, account_id: str, day: dt.date) -> int:
        """Transactions dated ``day`` for the account, whether or not they are visible yet."""
        if account_id not in self.profiles or not self.first_day <= day <= self._last_day:
            return 0
        return int(self._count_vector(account_id)[(day - self.first_day).days])

    # --- transactions ----------------------------------------------------------------------------

    def transactions_of_day(self, account_id: str, day: dt.date, *, today: dt.date) -> list[dict[str, Any]]:
        """Transactions dated ``day`` as the API shows them when it is ``today``.

        A transaction is visible once its posting lag has passed (a few post one or two days late);
        those within ``pending_days`` of today are still pending. Nothing is dated after today.
        """
        if day > today:
            return []
        pending = (today - day).days < self.config.pending_days
        generated, twin_ids = self._generated(account_id, day, pending)
        rows = [row for lag, row in generated if (today - day).days >= lag]
        # Some ids differ only by case: transaction_id is case-sensitive and both are real.
        if len(rows) >= 2 and twin_ids:
            rows[1]["transaction_id"] = rows[0]["transaction_id"].swapcase()
        return rows

    def _generated(
        self, account_id: str, day: dt.date, pending: bool
    ) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        """Every transaction dated ``day``, visible yet or not, with its posting lag in days; and
        whether the day has two ids that differ only by case."""
        count = self.generated_count(account_id, day)
        if count == 0:
            return [], False
        profile = self.profiles[account_id]
        rng = random.Random(stable_int(self.seed, "day", profile.index, day.toordinal()))
        rows = []
        for _ in range(count):
            lag = 0 if rng.random() < 0.92 else rng.randint(1, MAX_POSTING_LAG)
            rows.append((lag, self._transaction(rng, day, profile.currency, pending)))
        return rows, rng.random() < 0.03

    def day_net(self, account_id: str, day: dt.date) -> int:
        """The sum of the amounts of every transaction dated ``day`` (positive is money out)."""
        key = (account_id, day)
        net = self._nets.get(key)
        if net is None:
            net = sum(row["amount"] for _, row in self._generated(account_id, day, pending=False)[0])
            self._nets[key] = net
        return net

    def _transaction(self, rng: random.Random, day: dt.date, currency: str, pending: bool) -> dict[str, Any]:
        income = rng.random() < 0.12
        merchant, category = rng.choice(INCOME if income else MERCHANTS)
        cents = max(1, int(rng.lognormvariate(7.2 if income else 6.8, 1.1)))
        method = rng.choices(["CARD", "ACH", "CHECK", "WIRE"], [70, 22, 5, 3])[0]
        row: dict[str, Any] = {
            "transaction_id": _base62(rng.getrandbits(128), 22),
            # Positive is money out of the account (the vendor convention); income is negative.
            "amount": -cents * 10 if income else cents,
            "currency": currency,
            "date": day.isoformat(),
            "is_pending": pending,
            "merchant_name": merchant,
            "category": list(category),
            "payment_channel": rng.choice(["IN_STORE", "ONLINE", "OTHER"]),
            "payment_method": method,
            "transaction_type": "CREDIT" if income else "DEBIT",
        }
        if rng.random() < 0.9:
            row["authorized_date"] = (day - dt.timedelta(days=rng.choice([0, 0, 0, 1]))).isoformat()
        if method == "CHECK":
            row["check_number"] = str(rng.randrange(1000, 9999))
        return row

    # --- balances ------------------------------------------------------------------------------

    def balance(self, account_id: str, *, now: dt.datetime, today: dt.date) -> dict[str, Any]:
        """The account's balance on ``today``, as the vendor last reported it ``balance_age_seconds``
        before ``now``.

        ``current`` is the ledger at the close of the day before ``today``: every transaction dated
        before ``today``, by its date (posted transactions carry their posting date), moves it. On a
        deposit account money out lowers it; on a credit card, where ``current`` is what is owed, it
        raises it. It is anchored at start-up's today, so only the days between cost any work.
        The account ``config.drift_account`` drifts by ``DRIFT_CENTS`` a day: a balance that does not
        reconcile with its transactions.
        """
        profile = self.profiles[account_id]
        rng = random.Random(stable_int(self.seed, "balance", profile.index))
        anchor = rng.randrange(-50_000, 5_000_000)
        owed = profile.type == "CREDIT_CARD"
        if today >= self.today:
            moved = sum(self.day_net(account_id, d) for d in _days(self.today, today))
        else:
            moved = -sum(self.day_net(account_id, d) for d in _days(today, self.today))
        current = anchor + (moved if owed else -moved)
        if profile.index == self.config.drift_account:
            current += DRIFT_CENTS * (today - self.today).days
        record: dict[str, Any] = {
            "currency": profile.currency,
            "current": current,
            "available": None if rng.random() < 0.1 else current - rng.randrange(0, 20_000),
            "creation_time": _iso(now),
            "last_updated_time": _iso(now - dt.timedelta(seconds=1)),
            "last_updated_time_vendor": _iso(now - dt.timedelta(seconds=profile.balance_age_seconds)),
            "transactions_last_updated_time": _iso(now - dt.timedelta(seconds=rng.randrange(60, 7200))),
        }
        if owed:
            record["limit"] = rng.randrange(1, 50) * 100_000
        return record


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days)]
