"""A requests-per-second budget shared by every request of one client, sync or async."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateBudget:
    """Spaces request starts at least ``1 / rate`` seconds apart (virtual scheduling, no burst).

    ``reserve()`` books the next free start time and returns how long the caller must wait before
    sending; it never sleeps itself, so the same budget serves threads and asyncio tasks alike.
    Retries consume budget like any other request.
    """

    def __init__(self, requests_per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not requests_per_second > 0:
            raise ValueError(f"requests_per_second must be positive, got {requests_per_second}")
        self.requests_per_second = requests_per_second
        self._interval = 1.0 / requests_per_second
        self._clock = clock
        self._next_start = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
            return start - now

    def __repr__(self) -> str:
        return f"RateBudget(requests_per_second={self.requests_per_second})"
