"""Progress of long work, told every few seconds: done of total, rows, calls, rate and an ETA.

A backfill of thousands of accounts runs for many minutes; an operator watching the run log (or
``make run``'s progress bar, which reads these lines) should never wonder whether it is moving.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

INTERVAL_SECONDS = 10.0

Emit = Callable[[str], None]

LINE = re.compile(
    r"progress (?P<what>[\w ]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \(\d+%\)"
    r"(?:, (?P<rows>[\d,]+) rows)?, (?P<calls>[\d,]+) calls"
)
"""What a progress line looks like, for readers of the run log (``make run``'s bar)."""


@dataclass
class Progress:
    """Counters of one phase of a run (``what``: "transactions", "balances"), over ``total`` units."""

    what: str
    total: int
    unit: str = "accounts"
    done: int = 0
    rows: int | None = None
    calls: int = 0

    def __post_init__(self) -> None:
        self._began = time.monotonic()

    def advance(self, *, done: int = 0, rows: int = 0, calls: int = 0) -> None:
        self.done += done
        self.calls += calls
        if rows:
            self.rows = (self.rows or 0) + rows

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._began, 1e-9)
        share = self.done / self.total if self.total else 1.0
        parts = [f"progress {self.what}: {self.done}/{self.total} {self.unit} ({share:.0%})"]
        if self.rows is not None:
            parts.append(f"{self.rows:,} rows")
        parts.append(f"{self.calls:,} calls")
        parts.append(f"{self.calls / elapsed:.1f} calls/s")
        if 0 < self.done < self.total:
            remaining = elapsed / self.done * (self.total - self.done)
            parts.append(f"ETA {_clock(remaining)}")
        parts.append(f"elapsed {_clock(elapsed)}")
        return ", ".join(parts)

    @asynccontextmanager
    async def reporting(self, emit: Emit, interval: float = INTERVAL_SECONDS) -> AsyncIterator[Progress]:
        """Emit a line every ``interval`` seconds while the body runs, and a last one at its end."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(interval)
                emit(self.line())

        ticker = asyncio.create_task(tick())
        try:
            yield self
        finally:
            ticker.cancel()
        emit(self.line())


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
