"""The server's own limits, as an API gateway enforces them: requests in flight and requests per
second. A request above either is refused with the seconds to wait (``Retry-After``)."""

from __future__ import annotations

import math
import time


class ServerLimits:
    """Checked on the sandbox's one event loop, before a request is counted in flight."""

    def __init__(self, max_in_flight: int | None, rate_limit: float | None) -> None:
        self.max_in_flight = max_in_flight
        self.rate = rate_limit
        self._capacity = max(1.0, rate_limit or 0.0)  # one second's worth, and at least one request
        self._tokens = self._capacity
        self._refilled = time.monotonic()

    def refuse(self, in_flight: int) -> str | None:
        """``None`` to serve the request; else the ``Retry-After`` value (whole seconds) to answer."""
        if self.max_in_flight is not None and in_flight >= self.max_in_flight:
            return "1"
        if self.rate is None:
            return None
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return str(max(1, math.ceil((1 - self._tokens) / self.rate)))
