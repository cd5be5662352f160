"""One request budget for every worker on every machine, in a real Redis (issue 12, point 3).

Redis is ``SYNCTERA_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); each test works under a
random key prefix of its own, deleted after it. A Redis that is not there fails the test, naming it.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO
from urllib.parse import urlsplit

import dagster as dg
import pytest
import redis

from assets.resources import SyncteraApi
from pipelines.sandbox.process import sandbox_process
from pipelines.settings import REDIS_URL_VARIABLE, REPO_ROOT, ConfigError
from pipelines.synctera import SyncteraClient
from pipelines.synctera.redis_budget import BudgetUnavailableError, RedisRateBudget

from .conftest import Pipeline, utc_today

REDIS_URL = os.environ.get("SYNCTERA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEY = "sk-budget-test-0123456789"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A random key prefix of this test's own; whatever was written under it is deleted after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
        failure = None
    except redis.RedisError as exc:
        failure = type(exc).__name__
    if failure:  # outside the except: one line, no chained tracebacks
        where = client.connection_pool.connection_kwargs
        pytest.fail(
            f"Redis is not reachable at {where.get('host')}:{where.get('port')} ({failure}): "
            "start it (make services), or point SYNCTERA_TEST_REDIS_URL at one",
            pytrace=False,
        )
    prefix = f"synctera-test:{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _budget(key: str, rate: float, clock: list[int]) -> RedisRateBudget:
    return RedisRateBudget(redis.Redis.from_url(REDIS_URL), key, rate, clock_ms=lambda: clock[0])


@pytest.mark.scale_out
def test_the_redis_budget_spaces_starts_across_instances(prefix: str) -> None:
    """10 requests/s: two starts may come back to back (the tolerance for a late waker), then one
    per 100 ms, whichever instance asks; a refused ask spends nothing."""
    clock = [1_700_000_000_000]
    key = f"{prefix}budget"
    first, second = _budget(key, 10.0, clock), _budget(key, 10.0, clock)
    assert [first.admit(), second.admit(), first.admit()] == [0.0, 0.0, 0.1]
    clock[0] += 50
    assert second.admit() == 0.05
    clock[0] += 50
    assert [second.admit(), first.admit()] == [0.0, 0.1]
    clock[0] += 100
    assert [first.admit(), second.admit()] == [0.0, 0.1]

    clock[0] += 10_000  # idle time builds no burst beyond the tolerance
    pauses = []
    for _ in range(4):
        for wait in first.waits():  # the caller's sleeps, on the fake clock
            pauses.append(wait)
            clock[0] += round(wait * 1000)
    assert pauses == [0.1, 0.1]
    assert redis.Redis.from_url(REDIS_URL).pttl(key) != -1  # the state expires on its own


@pytest.mark.scale_out
def test_waiters_in_one_process_ask_redis_in_turn(prefix: str) -> None:
    """The second local waiter is told to come back one interval after the first, not with it."""
    clock = [1_700_000_000_000]
    budget = _budget(f"{prefix}budget", 10.0, clock)
    assert [budget.admit(), budget.admit()] == [0.0, 0.0]  # the budget is spent until +100 ms
    first, second = budget.waits(), budget.waits()
    assert [next(first), next(second)] == [0.1, 0.2]
    clock[0] += 100
    assert next(first, "admitted") == "admitted"
    assert next(second) == 0.1  # now first in line
    clock[0] += 100
    assert next(second, "admitted") == "admitted"


@pytest.mark.scale_out
def test_three_worker_processes_share_one_budget_within_5_percent(prefix: str) -> None:
    """Three processes (two asyncio, one threaded; 8 callers each) against one sandbox and one
    budget of 30 requests/s: their combined rate, over the span all three are running, is 30 ± 5 %."""
    rate, per_worker = 30.0, 70  # about 7 s: each worker gets a third of the budget
    key = f"{prefix}budget"
    with sandbox_process(["--accounts", "5"], api_key=API_KEY) as base_url:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.budget_worker",
                    base_url,
                    API_KEY,
                    REDIS_URL,
                    key,
                    str(rate),
                    mode,
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO_ROOT,
            )
            for mode in ("async", "threads", "async")
        ]
        stamps: list[list[float]] = [[] for _ in workers]
        enough = [threading.Event() for _ in workers]
        readers = [
            threading.Thread(target=_collect, args=(w.stdout, s, per_worker, e), daemon=True)
            for w, s, e in zip(workers, stamps, enough, strict=True)
        ]
        try:
            for reader in readers:
                reader.start()
            for event in enough:
                assert event.wait(timeout=120), "a worker stopped reporting"
            assert [w.poll() for w in workers] == [None, None, None], "a worker failed"
        finally:
            for worker in workers:
                os.kill(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
            for worker, reader in zip(workers, readers, strict=True):
                reader.join(timeout=30)
                assert worker.stdout is not None
                worker.stdout.close()

    start, end = max(s[0] for s in stamps), min(s[-1] for s in stamps)
    shares = [sum(start <= t <= end for t in s) for s in stamps]
    inside = sorted(t for s in stamps for t in s if start <= t <= end)
    measured = (len(inside) - 1) / (inside[-1] - inside[0])
    figures = f"{len(inside)} requests in {inside[-1] - inside[0]:.2f} s = {measured:.2f}/s, shares {shares}"
    print(f"\nthree workers, budget {rate:g}/s: {figures}")
    assert end - start > 4, figures
    assert abs(measured / rate - 1) < 0.05, figures
    assert min(shares) > len(inside) / 6, figures  # every worker was served, none starved


def _collect(stream: IO[str], into: list[float], enough: int, done: threading.Event) -> None:
    """A worker's completion times, until it ends; ``done`` once there are ``enough`` (or it ended)."""
    try:
        for line in stream:
            into.append(float(line))
            if len(into) >= enough:
                done.set()
    finally:
        done.set()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_redis_fails_the_call_naming_it_without_the_password() -> None:
    port = _closed_port()
    budget = RedisRateBudget.from_url(f"redis://user:hunter2@127.0.0.1:{port}/3", "k", 5.0)
    with (
        SyncteraClient(base_url="http://127.0.0.1:9/v0", api_key=API_KEY, budget=budget) as client,
        pytest.raises(BudgetUnavailableError, match=f"Redis at 127.0.0.1:{port}/3") as raised,
    ):
        client.list_external_accounts()
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(budget)
    with pytest.raises(BudgetUnavailableError, match="did not answer"):
        budget.ping()
    with pytest.raises(ValueError, match="not a valid Redis URL") as bad:
        RedisRateBudget.from_url("redis://:hunter2@127.0.0.1:port/0", "k", 5.0)
    assert "hunter2" not in str(bad.value)


@pytest.mark.scale_out
def test_the_resource_keys_the_budget_by_api_root_and_name_never_by_a_secret(prefix: str) -> None:
    api = SyncteraApi(
        base_url="https://api.synctera.com/v0",
        api_key=API_KEY,
        requests_per_second=5,
        rate_limit_redis_url=REDIS_URL,
        rate_limit_name="team-a",
    )
    api.check()  # pings the Redis
    budget = api.shared_budget()
    assert isinstance(budget, RedisRateBudget)
    assert budget.key.startswith("synctera:rate-budget:") and budget.key.endswith(":team-a")
    assert API_KEY not in budget.key and API_KEY not in repr(budget) and API_KEY not in repr(api)
    other = SyncteraApi(
        base_url="https://api-sandbox.synctera.com/v0",
        api_key=API_KEY,
        requests_per_second=5,
        rate_limit_redis_url=REDIS_URL,
    )
    other_budget = other.shared_budget()
    assert isinstance(other_budget, RedisRateBudget) and other_budget.key != budget.key

    with pytest.raises(ConfigError, match="requests_per_second"):
        SyncteraApi(
            base_url="https://api.synctera.com/v0", api_key=API_KEY, rate_limit_redis_url=REDIS_URL
        ).check()


@pytest.mark.scale_out
def test_a_run_takes_its_starts_from_redis_and_leaves_the_password_nowhere(
    pipeline: Pipeline, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dagster resource wired as the code location wires it (the URL through EnvVar): every
    request of the run is admitted by the Redis budget, and the URL's password is in no file."""
    parts = urlsplit(REDIS_URL)
    password = parts.password or f"pw-{secrets.token_hex(8)}"  # a Redis without one ignores it
    url = REDIS_URL if parts.password else parts._replace(netloc=f":{password}@{parts.netloc}").geturl()
    monkeypatch.setenv(REDIS_URL_VARIABLE, url)
    name = prefix.replace(":", "-").strip("-")  # this test's own budget
    admin = redis.Redis.from_url(REDIS_URL)

    def evalsha_calls() -> int:
        stats = admin.info("commandstats").get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0

    before = evalsha_calls()
    day = utc_today() - dt.timedelta(days=1)
    try:
        result = pipeline.materialize(
            day,
            day,
            synctera={
                "requests_per_second": 200.0,
                "rate_limit_redis_url": dg.EnvVar(REDIS_URL_VARIABLE),
                "rate_limit_name": name,
            },
        )
        assert result.success
        requests = len(pipeline.sandbox.records())
        assert requests > 5
        assert evalsha_calls() - before >= requests  # one admission (or more) per request
    finally:
        for key in admin.scan_iter(match=f"synctera:rate-budget:*:{name}"):
            admin.delete(key)
        admin.close()
    needle = password.encode()
    for root in (pipeline.dagster_home, pipeline.data_dir):
        for path in root.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"the Redis password leaked into {path}"
