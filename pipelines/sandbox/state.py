"""The sandbox's mutable state: accounts (listed in a stable but unpromised order) and idempotency."""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .world import stable_int


class BadPageToken(ValueError):
    """A page_token that this sandbox did not issue."""


@dataclass(frozen=True)
class ListFilter:
    ids: frozenset[str] | None = None
    customer_ids: frozenset[str] | None = None
    business_ids: frozenset[str] | None = None
    include_history: bool = False

    def matches(self, account: dict[str, Any]) -> bool:
        if not self.include_history and account["status"] == "DELETED":
            return False
        if self.ids is not None and account["id"] not in self.ids:
            return False
        if self.customer_ids is not None or self.business_ids is not None:
            in_customers = self.customer_ids is not None and account.get("customer_id") in self.customer_ids
            in_businesses = self.business_ids is not None and account.get("business_id") in self.business_ids
            return in_customers or in_businesses
        return True


class AccountStore:
    """Accounts by id, listed by a seeded hash of the id: stable across pages, in no useful order.

    Pages are keyset-paginated on that hash, so an account added mid-listing neither shifts nor
    repeats the others. Tokens are opaque to clients.
    """

    def __init__(self, seed: int, accounts: Iterable[dict[str, Any]]) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._by_id: dict[str, dict[str, Any]] = {}
        self._order: list[tuple[int, str]] = []
        for account in accounts:
            self.insert(account)

    def _key(self, account_id: str) -> int:
        return stable_int(self._seed, "order", account_id)

    def insert(self, account: dict[str, Any]) -> None:
        with self._lock:
            if account["id"] in self._by_id:
                raise KeyError(f"account {account['id']} exists")
            self._by_id[account["id"]] = account
            bisect.insort(self._order, (self._key(account["id"]), account["id"]))

    def get(self, account_id: str) -> dict[str, Any] | None:
        account = self._by_id.get(account_id)
        return copy.deepcopy(account) if account is not None else None

    def update(self, account_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            account = self._by_id[account_id]
            account.update(copy.deepcopy(changes))
            return copy.deepcopy(account)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(self._by_id[i]) for _, i in self._order]

    def page(
        self, selection: ListFilter, *, limit: int, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        after = self._decode(token) if token else -1
        with self._lock:
            start = bisect.bisect_right(self._order, (after, "\U0010ffff"))
            rows: list[dict[str, Any]] = []
            last_key = after
            more = False
            for key, account_id in self._order[start:]:
                account = self._by_id[account_id]
                if not selection.matches(account):
                    continue
                if len(rows) == limit:
                    more = True
                    break
                rows.append(copy.deepcopy(account))
                last_key = key
        return rows, (self._encode(last_key) if more else None)

    def _encode(self, key: int) -> str:
        raw = json.dumps({"after": key, "sig": self._sign(key)}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode(self, token: str) -> int:
        try:
            payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            key = int(payload["after"])
            valid = payload["sig"] == self._sign(key)
        except (ValueError, KeyError, TypeError) as exc:
            raise BadPageToken(token) from exc
        if not valid:
            raise BadPageToken(token)
        return key

    def _sign(self, key: int) -> str:
        return hashlib.blake2b(f"{self._seed}:{key}".encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class Remembered:
    fingerprint: str
    status: int
    body: bytes


class IdempotencyCache:
    """Idempotency-Key → the first answer: the same key and payload replays it; another payload is refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, Remembered] = {}

    @staticmethod
    def fingerprint(method: str, path: str, body: bytes) -> str:
        return hashlib.sha256(b"\0".join([method.encode(), path.encode(), body])).hexdigest()

    def lookup(self, key: str) -> Remembered | None:
        with self._lock:
            return self._seen.get(key)

    def remember(self, key: str, remembered: Remembered) -> None:
        with self._lock:
            self._seen.setdefault(key, remembered)
