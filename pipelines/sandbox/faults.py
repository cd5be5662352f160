"""Which request gets which fault: random rates from the config, plus faults queued by tests.

Rates apply to every request independently, retries included, so a fault can hit the same call
again and again. Queued faults are taken first, in order, by the next requests to their endpoint.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .config import ENDPOINTS, FAULT_KINDS, SandboxConfig


@dataclass(frozen=True)
class QueuedFault:
    kind: str
    endpoint: str | None


class FaultPlan:
    def __init__(self, config: SandboxConfig) -> None:
        self._rates = list(config.fault_rates.items())
        self._endpoints = config.fault_endpoints
        self._rng = random.Random(config.seed ^ 0x5EED)
        self._queue: deque[QueuedFault] = deque()
        self._lock = threading.Lock()

    def inject(self, kinds: Iterable[str], *, endpoint: str | None = None) -> None:
        """Queue faults for the next matching requests (``endpoint=None`` matches any)."""
        kinds = list(kinds)
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
        with self._lock:
            self._queue.extend(QueuedFault(kind, endpoint) for kind in kinds)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def draw(self, endpoint: str) -> str | None:
        """The fault for this request, or ``None`` to answer normally."""
        with self._lock:
            for queued in self._queue:
                if queued.endpoint in (None, endpoint):
                    self._queue.remove(queued)
                    return queued.kind
            if not self._rates or (self._endpoints is not None and endpoint not in self._endpoints):
                return None
            roll = self._rng.random()
        for kind, rate in self._rates:
            if roll < rate:
                return kind
            roll -= rate
        return None
