"""Shared fixtures: a real sandbox on a free loopback port, and clients pointed at it."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from pipelines.sandbox import RunningSandbox, Sandbox, SandboxConfig, running
from pipelines.synctera import AsyncSyncteraClient, RetryPolicy, SyncteraClient

TODAY = dt.date(2026, 11, 20)
"""A fixed sandbox "today", so that planted days and pending windows do not move with the calendar."""

FAST_RETRY = RetryPolicy(max_attempts=5, backoff_base=0.001, backoff_max=0.01, max_hint=0.01)
"""Real retries with tiny waits: the tests count attempts, they do not wait for them."""


@pytest.fixture
def api_key() -> str:
    """A distinctive key per test, so that a leak is found by a plain substring search."""
    return "sk_test_" + secrets.token_hex(16)


@pytest.fixture
def start_sandbox(api_key: str) -> Iterator[Callable[..., RunningSandbox]]:
    """Start sandboxes with any config overrides; all are stopped at the end of the test."""
    with ExitStack() as stack:

        def start(**overrides: object) -> RunningSandbox:
            options: dict[str, object] = {"seed": 7, "accounts": 40, "history_days": 120, "today": TODAY}
            options.update(api_key=api_key, **overrides)
            return stack.enter_context(running(Sandbox(SandboxConfig(**options))))  # type: ignore[arg-type]

        yield start


@pytest.fixture
def server(start_sandbox: Callable[..., RunningSandbox]) -> RunningSandbox:
    return start_sandbox()


@pytest.fixture
def sandbox(server: RunningSandbox) -> Sandbox:
    return server.sandbox


@pytest.fixture
def client(server: RunningSandbox) -> Iterator[SyncteraClient]:
    with SyncteraClient(base_url=server.base_url, api_key=server.api_key, retry=FAST_RETRY, seed=1) as c:
        yield c


@pytest.fixture
def async_client_factory(server: RunningSandbox) -> Callable[..., AsyncSyncteraClient]:
    def make(**options: object) -> AsyncSyncteraClient:
        options.setdefault("retry", FAST_RETRY)
        return AsyncSyncteraClient(base_url=server.base_url, api_key=server.api_key, **options)  # type: ignore[arg-type]

    return make
