"""Sync and async clients for Synctera's External Accounts API.

Both clients expose the same operations under the Ruby SDK's names. Each operation is built by
``operations`` and carried out by the shared ``exchange`` conversation; the clients only drive I/O:
a concurrency limit, an optional requests-per-second budget, sleeping between retries. The async
client's limit adapts (``adaptive``): it finds how many requests the API takes at once, up to
``max_concurrency``; the sync client's is fixed at ``max_concurrency``.

    with SyncteraClient(base_url="https://api-sandbox.synctera.com/v0", api_key=key) as client:
        for account in client.iter_external_accounts(include_history=True):
            ...
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypedDict, TypeVar, overload

import httpx
from typing_extensions import Unpack

from . import models, operations, sockets
from .adaptive import AdaptiveLimit, AsyncGate, ConcurrencyLimit, FixedLimit
from .auth import ApiKey, BearerAuth
from .errors import PaginationError
from .exchange import BodyBuffer, CallContext, Conversation, Send, Wait, exchange
from .limits import Budget, RateBudget
from .operations import Operation
from .retry import RetryPolicy
from .stats import CallStats, StatsSnapshot

P = ParamSpec("P")
T = TypeVar("T", bound=models.ApiRecord)

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0)
"""Balances are fetched live from the vendor and are often slow, hence the generous read timeout."""

DEFAULT_MAX_CONCURRENCY = 32
"""Requests in flight at most: the ceiling the async client's adaptive limit grows to."""
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""A full page of 500 transactions is well under 1 MiB; far more than this is a broken answer."""
USER_AGENT = "synctera-external-accounts-pipeline/0.1"


class AccountFilters(TypedDict, total=False):
    id: Sequence[str]
    customer_id: Sequence[str]
    business_id: Sequence[str]
    include_history: bool


def validate_base_url(base_url: str) -> httpx.URL:
    """The API root (…/v0) as a URL, or a ValueError that says what is wrong with it."""
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid Synctera base URL {base_url!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"invalid Synctera base URL {base_url!r}: expected http(s)://host[:port]/v0")
    if url.query or url.fragment:
        raise ValueError(f"invalid Synctera base URL {base_url!r}: no query or fragment allowed")
    return url


MAX_PAGES = 100_000
"""Pages one listing may take: ten million accounts at 100 a page. A server that keeps returning new
tokens past it is broken, not large."""


class PageCursor:
    """Follows ``next_page_token`` to the end, refusing any token already followed in this listing.

    A repeated token means the server is walking a cycle (A→B→A, not only A→A); following it would
    list accounts twice or never end, so it is an error. An empty token is an error too: only an
    absent token ends a listing.
    """

    def __init__(self, max_pages: int = MAX_PAGES) -> None:
        self.max_pages = max_pages
        self.token: str | None = None
        self.done = False
        self.pages = 0
        self._seen: set[str] = set()

    def advance(self, page: models.ExternalAccountsList) -> None:
        self.pages += 1
        token = page.next_page_token
        if token is None:
            self.done = True
            return
        if token == "":
            raise PaginationError(f"page {self.pages} returned an empty next_page_token")
        if self.pages >= self.max_pages:
            raise PaginationError(
                f"the listing did not end after {self.pages} pages (max_pages): the server keeps "
                "returning new next_page_tokens"
            )
        if token in self._seen:
            raise PaginationError(
                f"page {self.pages} returned next_page_token {token!r}, already followed in this "
                "listing: the server's pages form a cycle"
            )
        self._seen.add(token)
        self.token = token


class _ClientCore:
    """What both clients share: configuration, the secret, counters and the request builder."""

    _http: httpx.Client | httpx.AsyncClient

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | ApiKey,
        retry: RetryPolicy | None,
        max_concurrency: int,
        requests_per_second: float | None,
        seed: int | None,
        max_response_bytes: int,
        budget: Budget | None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.base_url = validate_base_url(base_url)
        self._key = api_key if isinstance(api_key, ApiKey) else ApiKey(api_key)
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max_concurrency
        self.max_response_bytes = max_response_bytes
        if budget is not None and requests_per_second:
            raise ValueError("give requests_per_second or a shared budget, not both")
        self.budget: Budget | None = budget or (
            RateBudget(requests_per_second) if requests_per_second else None
        )
        self.stats = CallStats()
        self._ctx = CallContext(self.retry, random.Random(seed), self.stats, self._key.redact)

    def _http_options(self, timeout: httpx.Timeout | float) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "auth": BearerAuth(self._key),
            "timeout": timeout,
            "limits": httpx.Limits(
                max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
            ),
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json, application/problem+json"},
        }

    def _conversation(self, op: Operation[T]) -> Conversation[T]:
        headers = {}
        if op.body is not None:
            headers["Content-Type"] = "application/json"
        if op.idempotency_key is not None:
            headers["Idempotency-Key"] = op.idempotency_key
        request = self._http.build_request(
            op.method, op.path, params=op.params, content=op.body, headers=headers
        )
        return exchange(op, request, self._ctx)

    def stats_snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={str(self.base_url)!r}, api_key={self._key!r}, "
            f"max_concurrency={self.max_concurrency}, budget={self.budget!r})"
        )


class _SyncOperation(Generic[P, T]):
    """Turns an operation builder into a blocking client method with the builder's signature."""

    def __init__(self, build: Callable[P, Operation[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: None, owner: type) -> Self: ...
    @overload
    def __get__(self, client: SyncteraClient, owner: type) -> Callable[P, T]: ...
    def __get__(self, client: SyncteraClient | None, owner: type) -> Self | Callable[P, T]:
        if client is None:
            return self
        build = self._build

        @functools.wraps(build)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return client.call(build(*args, **kwargs))

        return call


class _AsyncOperation(Generic[P, T]):
    """Turns an operation builder into a coroutine method with the builder's signature."""

    def __init__(self, build: Callable[P, Operation[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: None, owner: type) -> Self: ...
    @overload
    def __get__(self, client: AsyncSyncteraClient, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(
        self, client: AsyncSyncteraClient | None, owner: type
    ) -> Self | Callable[P, Coroutine[Any, Any, T]]:
        if client is None:
            return self
        build = self._build

        @functools.wraps(build)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return await client.call(build(*args, **kwargs))

        return call


class SyncteraClient(_ClientCore):
    """Blocking client; safe to share between threads (limits and counters are shared too)."""

    _http: httpx.Client

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | ApiKey,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        requests_per_second: float | None = None,
        transport: httpx.BaseTransport | None = None,
        seed: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        budget: Budget | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            retry=retry,
            max_concurrency=max_concurrency,
            requests_per_second=requests_per_second,
            seed=seed,
            max_response_bytes=max_response_bytes,
            budget=budget,
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._http = httpx.Client(transport=transport, **self._http_options(timeout))

    add_external_accounts = _SyncOperation(operations.add_external_accounts)
    add_vendor_external_accounts = _SyncOperation(operations.add_vendor_external_accounts)
    create_access_token = _SyncOperation(operations.create_access_token)
    create_verification_link_token = _SyncOperation(operations.create_verification_link_token)
    delete_external_account = _SyncOperation(operations.delete_external_account)
    get_external_account = _SyncOperation(operations.get_external_account)
    get_external_account_balance = _SyncOperation(operations.get_external_account_balance)
    get_external_account_transactions = _SyncOperation(operations.get_external_account_transactions)
    get_external_account_transaction_rows = _SyncOperation(operations.get_external_account_transaction_rows)
    get_external_account_transaction_batch = _SyncOperation(operations.get_external_account_transaction_batch)
    list_external_accounts = _SyncOperation(operations.list_external_accounts)
    sync_vendor_external_accounts = _SyncOperation(operations.sync_vendor_external_accounts)
    update_external_account = _SyncOperation(operations.update_external_account)
    refresh_transactions = _SyncOperation(operations.refresh_transactions)

    def call(self, op: Operation[T]) -> T:
        """Carry out one operation, retrying as the policy allows."""
        conversation = self._conversation(op)
        try:
            step = next(conversation)
            while True:
                if isinstance(step, Wait):
                    time.sleep(step.seconds)
                    step = conversation.send(None)
                    continue
                try:
                    response = self._send(step)
                except httpx.TransportError as exc:
                    step = conversation.throw(exc)
                else:
                    step = conversation.send(response)
        except StopIteration as done:
            result: T = done.value
            return result

    def _send(self, step: Send) -> httpx.Response:
        with self._slots:
            if self.budget is not None:
                for wait in self.budget.waits():
                    time.sleep(wait)
            response = self._http.send(step.request, stream=True)
            try:
                body = BodyBuffer(self.max_response_bytes)
                try:
                    for chunk in response.iter_bytes():
                        if not body.add(chunk):
                            break
                except httpx.DecodingError as exc:
                    body.undecodable = f"{type(exc).__name__}: {exc}"
            finally:
                response.close()
            return body.response(response)

    def iter_external_account_pages(
        self,
        *,
        limit: int = operations.MAX_PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        **filters: Unpack[AccountFilters],
    ) -> Iterator[models.ExternalAccountsList]:
        """Every page of ``list_external_accounts``, to the last one (no ``next_page_token``)."""
        cursor = PageCursor(max_pages)
        while not cursor.done:
            page = self.list_external_accounts(**filters, limit=limit, page_token=cursor.token)
            cursor.advance(page)
            yield page

    def iter_external_accounts(
        self, *, limit: int = operations.MAX_PAGE_SIZE, **filters: Unpack[AccountFilters]
    ) -> Iterator[models.ExternalAccount]:
        """Every external account matching the filters, paging to the end."""
        for page in self.iter_external_account_pages(limit=limit, **filters):
            yield from page.external_accounts

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncSyncteraClient(_ClientCore):
    """Asyncio client; one instance serves many concurrent tasks within its limits.

    With ``adaptive`` (the default) the requests in flight follow the API's answers (``AdaptiveLimit``:
    more while they come fast, fewer on 429/503 or rising latency), up to ``max_concurrency``;
    without it, ``max_concurrency`` is a fixed limit.
    """

    _http: httpx.AsyncClient

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | ApiKey,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        requests_per_second: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        seed: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        budget: Budget | None = None,
        adaptive: bool = True,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            retry=retry,
            max_concurrency=max_concurrency,
            requests_per_second=requests_per_second,
            seed=seed,
            max_response_bytes=max_response_bytes,
            budget=budget,
        )
        self.concurrency: ConcurrencyLimit = (
            AdaptiveLimit(max_concurrency) if adaptive else FixedLimit(max_concurrency)
        )
        self._gate = AsyncGate(self.concurrency)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options(timeout))
        sockets.install(self._http)

    add_external_accounts = _AsyncOperation(operations.add_external_accounts)
    add_vendor_external_accounts = _AsyncOperation(operations.add_vendor_external_accounts)
    create_access_token = _AsyncOperation(operations.create_access_token)
    create_verification_link_token = _AsyncOperation(operations.create_verification_link_token)
    delete_external_account = _AsyncOperation(operations.delete_external_account)
    get_external_account = _AsyncOperation(operations.get_external_account)
    get_external_account_balance = _AsyncOperation(operations.get_external_account_balance)
    get_external_account_transactions = _AsyncOperation(operations.get_external_account_transactions)
    get_external_account_transaction_rows = _AsyncOperation(operations.get_external_account_transaction_rows)
    get_external_account_transaction_batch = _AsyncOperation(
        operations.get_external_account_transaction_batch
    )
    list_external_accounts = _AsyncOperation(operations.list_external_accounts)
    sync_vendor_external_accounts = _AsyncOperation(operations.sync_vendor_external_accounts)
    update_external_account = _AsyncOperation(operations.update_external_account)
    refresh_transactions = _AsyncOperation(operations.refresh_transactions)

    async def call(self, op: Operation[T]) -> T:
        """Carry out one operation, retrying as the policy allows."""
        conversation = self._conversation(op)
        try:
            step = next(conversation)
            while True:
                if isinstance(step, Wait):
                    await asyncio.sleep(step.seconds)
                    step = conversation.send(None)
                    continue
                try:
                    response = await self._send(step)
                except httpx.TransportError as exc:
                    step = conversation.throw(exc)
                else:
                    step = conversation.send(response)
        except StopIteration as done:
            result: T = done.value
            return result

    async def _send(self, step: Send) -> httpx.Response:
        episode = await self._gate.acquire()
        status: int | None = None  # None: no answer (a transport failure, or cancelled)
        began = time.monotonic()
        try:
            if self.budget is not None:
                # A Redis budget's step is one sub-millisecond round trip, run inline: cheaper than a
                # thread hop, and never longer than the Redis client's socket timeout.
                for wait in self.budget.waits():
                    await asyncio.sleep(wait)
                began = time.monotonic()  # the round trip, not the budget's wait, measures the API
            response = await self._http.send(step.request, stream=True)
            try:
                body = BodyBuffer(self.max_response_bytes)
                try:
                    async for chunk in response.aiter_bytes():
                        if not body.add(chunk):
                            break
                except httpx.DecodingError as exc:
                    body.undecodable = f"{type(exc).__name__}: {exc}"
            finally:
                await response.aclose()
            status = response.status_code
            return body.response(response)
        finally:
            self._gate.release(episode, step.operation, status, time.monotonic() - began)

    def stats_snapshot(self) -> StatsSnapshot:
        return dataclasses.replace(
            self.stats.snapshot(), concurrency_limit=self.concurrency.limit, peak_in_flight=self._gate.peak
        )

    async def iter_external_account_pages(
        self,
        *,
        limit: int = operations.MAX_PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        **filters: Unpack[AccountFilters],
    ) -> AsyncIterator[models.ExternalAccountsList]:
        """Every page of ``list_external_accounts``, to the last one (no ``next_page_token``)."""
        cursor = PageCursor(max_pages)
        while not cursor.done:
            page = await self.list_external_accounts(**filters, limit=limit, page_token=cursor.token)
            cursor.advance(page)
            yield page

    async def iter_external_accounts(
        self, *, limit: int = operations.MAX_PAGE_SIZE, **filters: Unpack[AccountFilters]
    ) -> AsyncIterator[models.ExternalAccount]:
        """Every external account matching the filters, paging to the end."""
        async for page in self.iter_external_account_pages(limit=limit, **filters):
            for account in page.external_accounts:
                yield account

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
