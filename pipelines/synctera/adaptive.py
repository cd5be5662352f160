"""Requests in flight that find the API's limit on their own, as TCP's congestion control does.

``AdaptiveLimit`` is the arithmetic (no I/O, no clock): how many requests may be in flight, moved by
each answer. It starts at a quarter of the ceiling and grows by half every round trip (slow start)
until the first sign of congestion; from then on it grows by one request per round trip (additive
increase) and shrinks by ``backoff`` (multiplicative decrease) on congestion: a 429 or 503, or an
operation's recent latency rising well above its own long-run average (a server that queues). One
decrease per congestion episode: answers to requests sent before the last decrease say nothing about
the limit since. Close to the level that last got a 429 or 503 it grows far slower (probing, as
CUBIC does), so that a server's fixed limit is held rather than hit every few round trips.

``AsyncGate`` admits an async client's requests in arrival order while fewer than the limit are in
flight. Retries pass through it like any first attempt.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

CONGESTION_STATUSES = frozenset({429, 503})
"""Answers that mean "too much at once": the API's gateway limit, or a server shedding load."""


class ConcurrencyLimit(Protocol):
    """How many requests may be in flight, and what the answers tell it."""

    @property
    def limit(self) -> float: ...

    @property
    def allowed(self) -> int: ...

    @property
    def episode(self) -> int: ...

    @property
    def throttled(self) -> int: ...

    def observe(
        self, episode: int, operation: str, status: int | None, seconds: float, in_flight: int
    ) -> None:
        """An answer (``status`` None: a transport failure) to a request sent during ``episode``,
        with ``in_flight`` requests (itself included) outstanding."""


class FixedLimit:
    """A constant number in flight (adaptation turned off); still counts the 429/503 answers."""

    def __init__(self, allowed: int) -> None:
        if allowed < 1:
            raise ValueError(f"the concurrency limit must be at least 1, got {allowed}")
        self._allowed = allowed
        self.throttled = 0
        self.episode = 0

    @property
    def allowed(self) -> int:
        return self._allowed

    @property
    def limit(self) -> float:
        return float(self._allowed)

    def observe(
        self, episode: int, operation: str, status: int | None, seconds: float, in_flight: int
    ) -> None:
        self.throttled += int(status in CONGESTION_STATUSES)


@dataclass
class _Latency:
    """One operation's round trips: a short and a long exponentially weighted average."""

    short: float
    long: float
    samples: int = 1

    def add(self, seconds: float) -> None:
        self.samples += 1
        # A plain mean until there are enough answers: an average seeded by its first answer alone
        # would make any later one look like a rise.
        self.short += max(SHORT_WEIGHT, 1 / self.samples) * (seconds - self.short)
        self.long += max(LONG_WEIGHT, 1 / self.samples) * (seconds - self.long)


SLOW_START_STEP = 0.5
"""Growth per answer until the first congestion: x1.5 a round trip, so that the first overshoot of a
server's limit costs about half of it in 429s, not all of it."""

# A queueing server slows every answer from then on; a pause of this process (a busy event loop, the
# CPU shared) slows the dozen in flight at once. Averaging over twenty answers tells them apart.
SHORT_WEIGHT = 0.05  # about the last twenty answers
LONG_WEIGHT = 0.005  # about the last two hundred
LATENCY_WARMUP = 40
"""Answers of an operation before its latency is trusted as a signal."""


class AdaptiveLimit:
    """Additive increase, multiplicative decrease of the requests in flight, within ``[1, ceiling]``.

    ``backoff`` is the factor of a decrease. ``probe_rtts``: round trips it takes, near the level
    that last failed, to try one request more. Latency counts as congestion when an operation's
    recent average exceeds ``latency_tolerance`` times its long-run average plus ``latency_slack``
    seconds; latency is kept per operation because some (balances) are slow by nature, and the slack
    keeps this client's own pauses (a busy event loop adds milliseconds to every round trip) from
    passing for a server that queues.
    """

    def __init__(
        self,
        ceiling: int,
        *,
        initial: float | None = None,
        backoff: float = 0.7,
        probe_rtts: float = 32.0,
        latency_tolerance: float = 2.0,
        latency_slack: float = 0.05,
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"the concurrency ceiling must be at least 1, got {ceiling}")
        if not 0 < backoff < 1:
            raise ValueError(f"backoff must be between 0 and 1, got {backoff}")
        if probe_rtts < 1:
            raise ValueError(f"probe_rtts must be at least 1, got {probe_rtts}")
        self.ceiling = ceiling
        self.limit = self._bounded(initial if initial is not None else ceiling / 4)
        self.backoff = backoff
        self.probe_rtts = probe_rtts
        self.latency_tolerance = latency_tolerance
        self.latency_slack = latency_slack
        self.episode = 0  # decreases so far: a request carries the episode it was sent in
        self.throttled = 0  # 429 and 503 answers, every one
        self._slow_start = True
        self._failed_at: float | None = None  # the limit when a 429 or 503 last came
        self._latency: dict[str, _Latency] = {}

    @property
    def allowed(self) -> int:
        """Requests that may be in flight now."""
        return max(1, math.floor(self.limit))

    def observe(
        self, episode: int, operation: str, status: int | None, seconds: float, in_flight: int
    ) -> None:
        if status is None:
            return  # a transport failure says nothing reliable about load: neither grow nor shrink
        if status in CONGESTION_STATUSES:
            self.throttled += 1
            self._congested(episode, hard=True)
        elif self._latency_rose(operation, seconds):
            self._congested(episode, hard=False)
        elif 2 * in_flight >= self.limit:
            # Only a limit in use is tested by an answer: a listing's one page at a time says
            # nothing about 20 at once (as Netflix's concurrency-limits and TCP's cwnd validation).
            self._grow()

    def _grow(self) -> None:
        if self._slow_start:
            step = SLOW_START_STEP
        elif self._failed_at is not None and self.limit >= self._failed_at - 1:
            step = 1.0 / (self.limit * self.probe_rtts)  # near the last failure: one more per probe_rtts
            if self.limit > self._failed_at + 1:
                self._failed_at = None  # past it without congestion: the API's limit has risen
        else:
            step = 1.0 / self.limit  # one more per round trip
        self.limit = self._bounded(self.limit + step)

    def _congested(self, episode: int, *, hard: bool) -> None:
        if episode < self.episode:
            return  # sent before the last decrease: that decrease already answered this episode
        self._slow_start = False
        # A 429 or 503 marks a level to approach slowly from now on; a slower answer is a softer sign
        # (a server's queue, or this process's own pauses), not a limit to remember.
        self._failed_at = self.limit if hard else None
        self.limit = self._bounded(self.limit * self.backoff)
        self.episode += 1

    def _latency_rose(self, operation: str, seconds: float) -> bool:
        seen = self._latency.get(operation)
        if seen is None:
            self._latency[operation] = _Latency(seconds, seconds)
            return False
        seen.add(seconds)
        return (
            seen.samples >= LATENCY_WARMUP
            and seen.short > self.latency_tolerance * seen.long + self.latency_slack
        )

    def _bounded(self, value: float) -> float:
        return min(float(self.ceiling), max(1.0, value))

    def __repr__(self) -> str:
        return f"AdaptiveLimit(limit={self.limit:.2f}, ceiling={self.ceiling}, throttled={self.throttled})"


class AsyncGate:
    """Admits requests, first come first served, while fewer than ``limit.allowed`` are in flight.

    A freed slot is handed to the next waiter at once (counted in flight on its behalf), so a
    request arriving meanwhile cannot overtake it.
    """

    def __init__(self, limit: ConcurrencyLimit) -> None:
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the episode the request is sent in."""
        if not self._waiters and self.in_flight < self.limit.allowed:
            self._admit()
            return self.limit.episode
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot, then cancelled: pass it on
            elif waiter in self._waiters:  # not yet passed over by a release
                self._waiters.remove(waiter)
            raise
        return self.limit.episode

    def release(self, episode: int, operation: str, status: int | None, seconds: float) -> None:
        """The request is answered: tell the limit (which may now allow more), free the slot."""
        self.limit.observe(episode, operation, status, seconds, self.in_flight)
        self._release()

    def _admit(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def _release(self) -> None:
        self.in_flight -= 1
        while self._waiters and self.in_flight < self.limit.allowed:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._admit()
                waiter.set_result(None)
