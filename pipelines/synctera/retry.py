"""When to retry a request and how long to wait: pure functions, no I/O.

Retryable: 408, 429, every 5xx, and transport failures (connection refused/reset, timeouts). Other
4xx answers are final. A server hint (``Retry-After`` header in seconds or as an HTTP date, or the
problem body's ``retry_after``) is honoured up to ``max_hint``; a hint of 0 or a date in the past is no
hint. Without a hint the wait is a capped exponential backoff with jitter.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

RETRYABLE_STATUSES = frozenset({408, 429})


RETRYABLE_CODES = frozenset({"IDEMPOTENCY_CONCURRENT_USE"})
"""Problem codes worth another try: the same Idempotency-Key is still being processed (a resent write
whose first attempt timed out), so asking again later gets its outcome."""


def is_retryable_status(status: int, code: str | None = None) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500 or code in RETRYABLE_CODES


def is_retryable_transport_error(exc: httpx.TransportError) -> bool:
    """Network failures and timeouts are retried; a URL the client cannot even use is not."""
    return not isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.ProxyError)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with capped exponential backoff and jitter.

    ``max_attempts`` counts every send, the first included. ``max_hint`` caps how long a server's
    ``Retry-After`` may make us wait; ``backoff_max`` caps our own backoff.
    """

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_hint: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if min(self.backoff_base, self.backoff_max, self.max_hint) < 0:
            raise ValueError("backoff_base, backoff_max and max_hint must not be negative")

    def delay(self, *, attempt: int, hint: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        With a server hint: the hint plus up to 10% jitter, so that concurrent workers told the same
        time do not all come back at once; capped at ``max_hint``. Without: "equal jitter" backoff,
        between half and all of ``min(backoff_max, backoff_base * 2**(attempt-1))``.
        """
        if hint is not None and hint > 0:
            return min(self.max_hint, hint * (1.0 + 0.1 * rng.random()))
        ceiling: float = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + rng.random() * ceiling / 2


def retry_hint(
    response: httpx.Response, problem_retry_after: Any, *, now: datetime | None = None
) -> float | None:
    """The server's requested wait in seconds, or ``None`` when it gave no usable hint.

    Both the ``Retry-After`` header and the body's ``retry_after`` are read; when both are given the
    longer wins (the more cautious reading). Zero, negative, past and unparseable values are no hint.
    """
    candidates = [
        _header_seconds(response.headers.get("retry-after"), now=now),
        _body_seconds(problem_retry_after),
    ]
    hints = [c for c in candidates if c is not None and c > 0]
    return max(hints) if hints else None


def _header_seconds(value: str | None, *, now: datetime | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (when - (now or datetime.now(UTC))).total_seconds()
    return seconds if math.isfinite(seconds) else None


def _body_seconds(value: Any) -> float | None:
    # bool is an int subclass; a JSON true is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
