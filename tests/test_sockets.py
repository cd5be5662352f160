"""The pool's idle-connection check through ``sockets.PolledBackend``: reuse while the server keeps a
connection open, a new connection once the server has closed it, on a real loopback server."""

from __future__ import annotations

import asyncio
import select
from typing import Any

import httpx
import pytest

from pipelines.synctera import AsyncSyncteraClient, sockets

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Server:
    """Answers each request on a connection with ``{}``; closes a connection after its first answer
    when ``close_after_answer``. Counts the connections it accepted."""

    def __init__(self, close_after_answer: bool) -> None:
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(RESPONSE)
                await writer.drain()
                if self.close_after_answer:
                    return
        except asyncio.IncompleteReadError:
            return  # the client closed it
        finally:
            writer.close()
            await writer.wait_closed()
            self.closed.set()


async def _two_gets(close_after_answer: bool) -> tuple[int, list[bool]]:
    server = Server(close_after_answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    readable: list[bool] = []
    async with listener, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert sockets.install(http) == 1
        backend = http._transport._pool._network_backend  # type: ignore[attr-defined]
        assert isinstance(backend, sockets.PolledBackend)
        opened: list[sockets._Stream] = []
        connect = backend.connect_tcp

        async def recording_connect(*args: object, **kwargs: object) -> sockets._Stream:
            opened.append(await connect(*args, **kwargs))  # type: ignore[arg-type]
            return opened[-1]

        backend.connect_tcp = recording_connect  # type: ignore[method-assign]
        assert (await http.get("/a")).json() == {}
        (stream,) = opened
        if close_after_answer:
            await server.closed.wait()
            if stream._socket is not None and stream._socket.fileno() >= 0:
                # The pool has not yet seen it: wait for the server's FIN (an event, not a sleep).
                select.select([stream._socket], [], [], 5)
        readable.append(stream.get_extra_info("is_readable"))
        assert (await http.get("/b")).json() == {}
    return server.connections, readable


def test_an_open_idle_connection_is_reused() -> None:
    connections, readable = asyncio.run(_two_gets(close_after_answer=False))
    assert readable == [False]
    assert connections == 1


def test_a_connection_the_server_closed_is_replaced_not_used() -> None:
    connections, readable = asyncio.run(_two_gets(close_after_answer=True))
    assert readable == [True]
    assert connections == 2  # the second GET went out on a new connection and was answered


def test_the_synctera_client_installs_it_and_a_test_transport_is_left_alone() -> None:
    async def pools() -> tuple[int, int]:
        real = AsyncSyncteraClient(base_url="http://127.0.0.1:9/v0", api_key="k")
        mocked = AsyncSyncteraClient(
            base_url="http://127.0.0.1:9/v0",
            api_key="k",
            transport=httpx.MockTransport(lambda request: httpx.Response(200)),
        )
        async with real, mocked:
            # Fails if the client stops installing it, or if httpx's internals move from under it.
            backend = real._http._transport._pool._network_backend  # type: ignore[attr-defined]
            assert isinstance(backend, sockets.PolledBackend)
            return sockets.install(real._http), sockets.install(mocked._http)

    assert asyncio.run(pools()) == (1, 0)


def test_one_poll_answers_a_pass_over_the_pool_and_the_next_turn_polls_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    polls = 0
    real_poll = select.poll

    def counted_poll() -> Any:
        nonlocal polls
        polls += 1
        return real_poll()

    monkeypatch.setattr(select, "poll", counted_poll)
    monkeypatch.setattr(sockets, "FRESH_SECONDS", 3600.0)  # a preempted test must not poll twice

    async def run() -> tuple[list[list[bool]], list[int]]:
        keeps, closes = Server(close_after_answer=False), Server(close_after_answer=True)
        listeners = [await asyncio.start_server(s.handle, "127.0.0.1", 0) for s in (keeps, closes)]
        ports = [listener.sockets[0].getsockname()[1] for listener in listeners]
        async with listeners[0], listeners[1], httpx.AsyncClient() as http:
            sockets.install(http)
            backend = http._transport._pool._network_backend  # type: ignore[attr-defined]
            opened: list[sockets._Stream] = []
            connect = backend.connect_tcp

            async def recording_connect(*args: object, **kwargs: object) -> sockets._Stream:
                opened.append(await connect(*args, **kwargs))
                return opened[-1]

            backend.connect_tcp = recording_connect
            keep, close = (f"http://127.0.0.1:{port}/" for port in ports)
            # Two at once: two connections to the server that keeps them, then one it closes.
            answers = await asyncio.gather(http.get(keep), http.get(keep))
            assert [a.json() for a in answers] == [{}, {}] and keeps.connections == 2
            assert (await http.get(close)).json() == {}
            await closes.closed.wait()
            closed = opened[2]._socket
            if closed is not None and closed.fileno() >= 0:  # the pool may have seen it and closed it
                select.select([closed], [], [], 5)  # the server's FIN has arrived (an event)
            await asyncio.sleep(0)  # a turn of the loop: answers polled before the FIN are gone
            before = polls
            first = [stream.get_extra_info("is_readable") for stream in opened]  # one pass
            first_polls = polls - before
            await asyncio.sleep(0)  # the next turn: asked again, polled again
            second = [stream.get_extra_info("is_readable") for stream in opened]
            second_polls = polls - before - first_polls
            monkeypatch.setattr(sockets, "FRESH_SECONDS", -1.0)  # answers too old at once: each polls
            third = [stream.get_extra_info("is_readable") for stream in opened]
            third_polls = polls - before - first_polls - second_polls
            return [first, second, third], [first_polls, second_polls, third_polls]

    answers, counts = asyncio.run(run())
    assert answers == [[False, False, True]] * 3  # open and idle (two) / closed by the server
    assert counts == [1, 1, 3]  # a pass, the next turn's pass, a poll per check
