"""One request budget for every process on every machine, kept in Redis by pyrate-limiter's GCRA.

GCRA (a leaky bucket kept as one "theoretical arrival time" per key) is pyrate-limiter's; its Lua
script reads, advances and writes that time in one atomic step, so any number of workers on any number
of machines share one budget. Each step is one round trip: it admits the request now or says how long
until one may be admitted, and the caller asks again after that (``waits()``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import cast

import redis
from pyrate_limiter import GCRA, Decision, Rate
from pyrate_limiter.buckets import RedisStateStore

# Starts one interval early are tolerated, so that a waiter woken a little late (timer slack, the
# round trip) does not lose its slot for good: the long-run rate stays exact, at most two starts
# ever come back to back, and no span holds more than one start beyond what even spacing allows.
# (With 1, each late waker's delay is lost: 29.2 requests/s against 30 across three processes.)
BURST = 2
# A Redis that stops answering fails the request rather than stalling the event loop.
SOCKET_TIMEOUT_SECONDS = 2.0
# The rate as a whole number of starts per whole milliseconds (pyrate-limiter's ``Rate``), precise
# to one part in this many.
_RESOLUTION = 1000


class BudgetUnavailableError(RuntimeError):
    """The Redis holding the budget did not answer; the message names host, port and database only.

    Not a ``SyncteraError``: the API did nothing wrong, and a run must fail on it rather than file it
    as one account's failed call (as a balance's ``SyncteraError`` is)."""


def redis_location(client: redis.Redis) -> str:
    """``host:port/db`` (or the socket path): where the budget lives, without user or password."""
    options = client.connection_pool.connection_kwargs
    where = options.get("path") or f"{options.get('host')}:{options.get('port')}"
    return f"{where}/{options.get('db', 0)}"


def _unavailable(client: redis.Redis, exc: redis.RedisError) -> BudgetUnavailableError:
    """The error to raise, naming where and why; the password is cut out of Redis's own words."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    password = client.connection_pool.connection_kwargs.get("password")
    if password:
        reason = reason.replace(str(password), "***")
    return BudgetUnavailableError(
        f"the request budget's Redis at {redis_location(client)} did not answer ({reason}); "
        "check SYNCTERA_RATE_LIMIT_REDIS_URL"
    )


class _LocalQueue:
    """This process's waiters in arrival order, so that each asks Redis near its own turn.

    Without it every waiter would ask again the moment a start frees up: 32 waiters in a process
    would make ~32 round trips per start, each blocking its event loop. ``ahead()`` never counts more
    waiters than are really ahead (anyone leaving lowers it), so the oldest waiter always asks on
    time and no start goes untaken.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued = 0
        self._left = 0

    def join(self) -> int:
        with self._lock:
            self._issued += 1
            return self._issued - 1

    def ahead(self, ticket: int) -> int:
        with self._lock:
            return max(0, ticket - self._left)

    def leave(self) -> None:
        with self._lock:
            self._left += 1


class RedisRateBudget:
    """Spaces request starts ``1 / requests_per_second`` apart across every client using ``key``.

    ``key`` names the budget in Redis (the API root and a name, never the API key). Clocks are the
    machines' own wall clocks, which must agree (NTP): a clock ``d`` seconds ahead starts ``d`` early.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        requests_per_second: float,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if not requests_per_second > 0:
            raise ValueError(f"requests_per_second must be positive, got {requests_per_second}")
        self.requests_per_second = requests_per_second
        self.key = key
        self._client = client
        self._clock_ms = clock_ms
        interval_ms = max(1, round(_RESOLUTION * 1000 / requests_per_second))
        self._rates = [Rate(_RESOLUTION, interval_ms, burst=BURST)]
        self._algorithm = GCRA()
        self._store = RedisStateStore(client, key)
        self._interval = 1 / requests_per_second
        self._queue = _LocalQueue()

    @classmethod
    def from_url(cls, url: str, key: str, requests_per_second: float) -> RedisRateBudget:
        """A budget in the Redis at ``url`` (``redis://``, ``rediss://`` or ``unix://``)."""
        try:
            client = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS
            )
        except ValueError:
            # Neither the URL nor redis-py's words about it: either may hold the password.
            raise ValueError("SYNCTERA_RATE_LIMIT_REDIS_URL is not a valid Redis URL") from None
        return cls(client, key, requests_per_second)

    def admit(self) -> float:
        """One atomic step: ``0.0`` when a start is taken for now, else the seconds until asking again.

        The store's ``check`` is used directly (not a ``StateBucket``), because the bucket keeps its
        last decision on itself, which threads sharing one budget would overwrite.
        """
        try:
            decision = cast(
                Decision,
                self._store.check(self._algorithm, self._rates, self._clock_ms(), 1),  # type: ignore[no-untyped-call]
            )
        except redis.RedisError as exc:
            raise _unavailable(self._client, exc) from None
        if decision.allowed:
            return 0.0
        assert decision.retry_after_ms is not None  # one start never exceeds the burst
        return decision.retry_after_ms / 1000

    def waits(self) -> Iterator[float]:
        """Until admitted: the wait Redis names, plus one interval per local waiter ahead."""
        ticket = self._queue.join()
        try:
            while (wait := self.admit()) > 0:
                yield wait + self._queue.ahead(ticket) * self._interval
        finally:  # also when the caller is cancelled mid-wait and drops the generator
            self._queue.leave()

    def ping(self) -> None:
        """Fail now, naming where, if the Redis is unreachable (or refuses the credentials)."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise _unavailable(self._client, exc) from None

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"RedisRateBudget({redis_location(self._client)}, key={self.key!r}, "
            f"requests_per_second={self.requests_per_second})"
        )
