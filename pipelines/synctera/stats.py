"""Counters of what a client did: requests sent, retries and failures, per operation."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

KINDS = ("calls", "requests", "retries", "failures")


@dataclass(frozen=True)
class StatsSnapshot:
    """Requests counts every send (retries included); ``calls`` counts logical calls."""

    calls: dict[str, int]
    requests: dict[str, int]
    retries: dict[str, int]
    failures: dict[str, int]

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_retries(self) -> int:
        return sum(self.retries.values())


class CallStats:
    """Thread-safe counters keyed by operationId (e.g. ``getExternalAccountTransactions``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}

    def count(self, kind: str, operation_id: str) -> None:
        """Add one to ``kind`` (calls, requests, retries or failures) for the operation."""
        with self._lock:
            self._counts[kind][operation_id] += 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(**{kind: dict(counter) for kind, counter in self._counts.items()})
