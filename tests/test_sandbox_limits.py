"""The sandbox's own limits (requests in flight, requests per second), answered as a gateway
would: 429 with Retry-After, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from pipelines.sandbox import RunningSandbox, SandboxConfig


async def _burst(server: RunningSandbox, count: int, path: str) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as client:
        return await asyncio.gather(*(client.get(path) for _ in range(count)))


def test_requests_above_the_in_flight_limit_are_answered_429_with_retry_after(
    start_sandbox: Callable[..., RunningSandbox],
) -> None:
    server = start_sandbox(max_in_flight=3, latency={"list": 0.5})
    answers = asyncio.run(_burst(server, 10, "/external_accounts"))
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(served) == 3 and len(refused) == 7
    assert {a.headers["retry-after"] for a in refused} == {"1"}
    assert {a.json()["code"] for a in refused} == {"TOO_MANY_REQUESTS"}
    assert server.sandbox.max_in_flight == 3
    assert sum(r.fault == "limit" for r in server.sandbox.records("list")) == 7


def test_requests_above_the_rate_limit_are_answered_429_with_the_wait(
    start_sandbox: Callable[..., RunningSandbox],
) -> None:
    server = start_sandbox(rate_limit=5.0)
    answers = asyncio.run(_burst(server, 20, "/external_accounts?limit=1"))
    served = sum(a.status_code == 200 for a in answers)
    assert 5 <= served <= 10, "one second's burst, and what refilled while the burst was served"
    refused = [a for a in answers if a.status_code == 429]
    assert refused and all(int(a.headers["retry-after"]) >= 1 for a in refused)


def test_a_rate_below_one_a_second_still_serves_one_request_at_a_time(
    start_sandbox: Callable[..., RunningSandbox],
) -> None:
    server = start_sandbox(rate_limit=0.5)
    answers = asyncio.run(_burst(server, 3, "/external_accounts?limit=1"))
    assert sorted(a.status_code for a in answers) == [200, 429, 429]
    assert {a.headers["retry-after"] for a in answers if a.status_code == 429} == {"2"}


@pytest.mark.parametrize(("field", "value"), [("max_in_flight", 0), ("rate_limit", 0.0)])
def test_a_limit_that_serves_nothing_is_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SandboxConfig(**{field: value})  # type: ignore[arg-type]
