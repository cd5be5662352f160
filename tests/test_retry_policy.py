"""Retry maths and the request budget, as pure functions (no server needed)."""

from __future__ import annotations

import datetime as dt
import random
from email.utils import format_datetime

import httpx
import pytest

from pipelines.synctera.limits import RateBudget, SharedRateBudget
from pipelines.synctera.retry import RetryPolicy, is_retryable_status, retry_hint

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def _response(headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(429, headers=headers or {})


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "7"}, None, 7.0),
        ({"Retry-After": "1.5"}, None, 1.5),
        ({}, 4, 4.0),
        ({"Retry-After": "2"}, 9, 9.0),  # both given: the longer wins
        ({"Retry-After": format_datetime(NOW + dt.timedelta(seconds=30), usegmt=True)}, None, 30.0),
        ({"Retry-After": "0"}, None, None),  # zero is no hint
        ({"Retry-After": format_datetime(NOW - dt.timedelta(seconds=30), usegmt=True)}, None, None),
        ({"Retry-After": "soon"}, "5", None),  # garbage header, non-numeric body
        ({}, True, None),
        ({}, None, None),
    ],
)
def test_retry_hint_reads_header_and_body(
    headers: dict[str, str], body: object, expected: float | None
) -> None:
    assert retry_hint(_response(headers), body, now=NOW) == expected


def test_backoff_grows_exponentially_within_jitter_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)]:
        delays = [policy.delay(attempt=attempt, hint=None, rng=rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4, "jitter spreads the waits"


def test_server_hint_is_honoured_with_small_jitter_and_capped() -> None:
    policy = RetryPolicy(max_hint=10.0)
    rng = random.Random(0)
    waits = [policy.delay(attempt=1, hint=3.0, rng=rng) for _ in range(100)]
    assert all(3.0 <= w <= 3.3 for w in waits)
    assert policy.delay(attempt=1, hint=3600.0, rng=rng) == 10.0


def test_only_408_429_and_5xx_are_retryable() -> None:
    statuses = (400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504)
    assert [s for s in statuses if is_retryable_status(s)] == [
        408, 429, 500, 502, 503, 504,
    ]  # fmt: skip


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(backoff_base=-1)


def test_rate_budget_spaces_request_starts() -> None:
    clock = [100.0]
    budget = RateBudget(4.0, clock=lambda: clock[0])
    waits = [budget.reserve() for _ in range(5)]
    assert waits == [0.0, 0.25, 0.5, 0.75, 1.0]
    clock[0] = 110.0  # idle time does not build up a burst
    assert [budget.reserve(), budget.reserve()] == [0.0, 0.25]
    with pytest.raises(ValueError, match="positive"):
        RateBudget(0)


def test_a_booking_budget_yields_its_one_wait() -> None:
    clock = [100.0]
    budget = RateBudget(4.0, clock=lambda: clock[0])
    assert [list(budget.waits()) for _ in range(3)] == [[], [0.25], [0.5]]


def test_a_shared_budget_spaces_starts_across_instances_and_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = [1000.0]
    path = tmp_path / "budget"
    first, second = (SharedRateBudget(path, 10.0, clock=lambda: clock[0]) for _ in range(2))
    waits = [first.reserve(), second.reserve(), first.reserve(), second.reserve()]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])
