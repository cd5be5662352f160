"""The pool's idle-connection check through ``sockets.PolledBackend``: reuse while the server keeps a
connection open, a new connection once the server has closed it, on a real loopback server."""

from __future__ import annotations

import asyncio
import select

import httpx

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
