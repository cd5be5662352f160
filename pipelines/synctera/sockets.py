"""httpx's connection pool, with its idle-connection check at the cost of one ``poll``.

Whenever a request enters or leaves the pool, httpcore (1.0) asks every idle connection whether
the server has closed it, through ``get_extra_info("is_readable")``. On the anyio backend that
rebuilds anyio's attribute table for each connection before it polls the socket: about 4.6 µs
against 0.6 µs for the poll alone. A run keeps up to 32 connections, most idle while accounts
finish, so the table was about a tenth of the transactions fetch's CPU (httpcore's issue #928).
``install`` wraps the pools' network backend so that each stream keeps its socket, and one ``poll``
of all the pool's sockets answers every check of one pass over the pool (the pass runs without
yielding to the event loop, so the answers are forgotten at the loop's next turn); reads, writes and
TLS are the backend's own.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
import weakref
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


def _readable(sock: socket.socket) -> bool:
    """True when a read would not block: data, or the end of the stream (the server closed it)."""
    fd = sock.fileno()
    if fd < 0:
        return True  # closed on our side: as unusable as one the server closed
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows


FRESH_SECONDS = 0.001
"""How long one poll's answers may serve. A task can run for milliseconds (a body decoded, a buffer
flushed) between two passes without yielding: the bound keeps an answer as fresh as a check made
one connection at a time, where a server closing a connection just after it is always a race."""


class PoolPoll:
    """Whether each stream of one pool would read without blocking, asked of the system once per
    pass of httpcore over the pool: the answers last until the event loop's next turn, and never
    longer than ``FRESH_SECONDS``. Outside an event loop, or for a stream opened since, each check
    polls alone."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[_Stream] = weakref.WeakSet()
        self._answers: dict[_Stream, bool] | None = None
        self._polled_at = 0.0

    def add(self, stream: _Stream) -> None:
        self._streams.add(stream)

    def readable(self, stream: _Stream, sock: socket.socket) -> bool:
        now = time.monotonic()
        if self._answers is None or now - self._polled_at > FRESH_SECONDS:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return _readable(sock)
            if self._answers is None:  # else already due to be forgotten at the next turn
                loop.call_soon(self._forget)
            self._answers, self._polled_at = self._poll_all(), now
        answer = self._answers.get(stream)
        return _readable(sock) if answer is None else answer

    def _poll_all(self) -> dict[_Stream, bool]:
        by_fd = {
            fd: stream
            for stream in list(self._streams)
            if stream._socket is not None and (fd := stream._socket.fileno()) >= 0
        }
        if not by_fd or not hasattr(select, "poll"):
            return {}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(0)}
        return {stream: fd in ready for fd, stream in by_fd.items()}

    def _forget(self) -> None:
        self._answers = None


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, poll: PoolPoll) -> None:
        self._inner = inner
        self._poll = poll
        # TLS wraps the same TCP socket: a closed connection reads as readable either way.
        self._socket: socket.socket | None = inner.get_extra_info("socket")
        poll.add(self)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout), self._poll)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return self._poll.readable(self, self._socket)
        return self._inner.get_extra_info(info)


class PolledBackend(httpcore.AsyncNetworkBackend):
    """A network backend whose streams answer ``is_readable`` from one poll of all their sockets."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner
        self.poll = PoolPoll()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream, self.poll)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self.inner.connect_unix_socket(path, timeout, socket_options), self.poll)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def install(client: httpx.AsyncClient) -> int:
    """Wrap the network backend of each httpcore pool behind ``client`` (its transport and proxy
    mounts); returns how many. A transport of another kind (a test's) is left as it is."""
    transports = [client._transport, *client._mounts.values()]  # no public hook for a backend
    wrapped = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(pool, httpcore.AsyncConnectionPool) and backend is not None:
            if not isinstance(backend, PolledBackend):
                pool._network_backend = PolledBackend(backend)
            wrapped += 1
    return wrapped
