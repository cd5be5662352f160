"""A requests-per-second budget shared by every request of one client, sync or async.

``RateBudget`` serves one process, ``SharedRateBudget`` every process on one machine; the Redis one
(``redis_budget.RedisRateBudget``) every process on every machine.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol


class Budget(Protocol):
    """Decides when each request may start: the caller sleeps every pause ``waits()`` yields, then sends.

    It never sleeps itself, so the same budget serves threads (``time.sleep``) and asyncio tasks
    (``asyncio.sleep``) alike. A budget that books slots ahead yields at most once; one that admits
    now or says when to ask again (Redis) yields until it admits.
    """

    requests_per_second: float

    def waits(self) -> Iterator[float]: ...


class _BooksAhead:
    """For budgets whose ``reserve()`` books the next free start: the one wait until it."""

    def reserve(self) -> float:
        raise NotImplementedError

    def waits(self) -> Iterator[float]:
        if (wait := self.reserve()) > 0:
            yield wait


class RateBudget(_BooksAhead):
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


class SharedRateBudget(_BooksAhead):
    """The same spacing as ``RateBudget``, shared by every process on this machine using ``path``.

    The next free start time lives in a small file, read and advanced under an exclusive ``flock``
    (released by the kernel even if a holder is killed), so concurrent runs against one API key
    stay within one budget together.
    """

    def __init__(
        self, path: Path, requests_per_second: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not requests_per_second > 0:
            raise ValueError(f"requests_per_second must be positive, got {requests_per_second}")
        self.path = path
        self.requests_per_second = requests_per_second
        self._interval = 1.0 / requests_per_second
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)

    def reserve(self) -> float:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            raw = os.pread(descriptor, 8, 0)
            next_start = struct.unpack("d", raw)[0] if len(raw) == 8 else 0.0
            now = self._clock()
            start = max(now, next_start)
            os.pwrite(descriptor, struct.pack("d", start + self._interval), 0)
            return start - now
        finally:
            os.close(descriptor)  # also releases the lock

    def __repr__(self) -> str:
        return f"SharedRateBudget({str(self.path)!r}, requests_per_second={self.requests_per_second})"
