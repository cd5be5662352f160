"""Counters of what a client did: requests sent, retries and failures, per operation."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

KINDS = ("calls", "requests", "retries", "failures", "throttled")


@dataclass(frozen=True)
class StatsSnapshot:
    """Requests counts every send (retries included); ``calls`` counts logical calls; ``throttled``
    the answers 429 or 503 (too much at once)."""

    calls: dict[str, int]
    requests: dict[str, int]
    retries: dict[str, int]
    failures: dict[str, int]
    throttled: dict[str, int] = field(default_factory=dict)
    first_sent: float | None = None  # epoch seconds of the first request sent
    last_answered: float | None = None  # ... and of the last answer (or transport failure) received
    concurrency_limit: float | None = None  # requests allowed in flight when taken (async client)
    peak_in_flight: int | None = None  # the most requests in flight at once (async client)

    @property
    def api_seconds(self) -> float:
        """From the first request to the last answer: the span the API was being used."""
        if self.first_sent is None or self.last_answered is None:
            return 0.0
        return max(0.0, self.last_answered - self.first_sent)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_retries(self) -> int:
        return sum(self.retries.values())

    @property
    def total_throttled(self) -> int:
        return sum(self.throttled.values())


def combined(snapshots: Iterable[StatsSnapshot]) -> StatsSnapshot:
    """Several clients' figures as one (e.g. a run's shards): counts summed, the span from the first
    request to the last answer, and the largest concurrency limit and peak of any one client (they
    need not have run at once)."""
    taken = list(snapshots)

    def summed(name: str) -> dict[str, int]:
        total: Counter[str] = Counter()
        for snapshot in taken:
            total.update(getattr(snapshot, name))
        return dict(total)

    def present(values: Iterable[float | None]) -> list[float]:
        return [v for v in values if v is not None]

    firsts, lasts = present(s.first_sent for s in taken), present(s.last_answered for s in taken)
    limits, peaks = present(s.concurrency_limit for s in taken), present(s.peak_in_flight for s in taken)
    return StatsSnapshot(
        calls=summed("calls"),
        requests=summed("requests"),
        retries=summed("retries"),
        failures=summed("failures"),
        throttled=summed("throttled"),
        first_sent=min(firsts) if firsts else None,
        last_answered=max(lasts) if lasts else None,
        concurrency_limit=max(limits) if limits else None,
        peak_in_flight=int(max(peaks)) if peaks else None,
    )


class CallStats:
    """Thread-safe counters keyed by operationId (e.g. ``getExternalAccountTransactions``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self._first_sent: float | None = None
        self._last_answered: float | None = None

    def count(self, kind: str, operation_id: str) -> None:
        """Add one to ``kind`` (one of ``KINDS``) for the operation."""
        with self._lock:
            self._counts[kind][operation_id] += 1
            if kind == "requests" and self._first_sent is None:
                self._first_sent = time.time()

    def answered(self) -> None:
        """Note that a request came back (with any answer, or a transport failure)."""
        self._last_answered = time.time()

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            counts = {kind: dict(counter) for kind, counter in self._counts.items()}
            return StatsSnapshot(
                calls=counts["calls"],
                requests=counts["requests"],
                retries=counts["retries"],
                failures=counts["failures"],
                throttled=counts["throttled"],
                first_sent=self._first_sent,
                last_answered=self._last_answered,
            )
