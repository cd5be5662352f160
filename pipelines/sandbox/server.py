"""Serving a sandbox over real HTTP on loopback: in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from .app import Sandbox


@dataclass(frozen=True)
class RunningSandbox:
    sandbox: Sandbox
    host: str
    port: int

    @property
    def base_url(self) -> str:
        """The API root to give a client, like ``https://api-sandbox.synctera.com/v0``."""
        return f"http://{self.host}:{self.port}/v0"

    @property
    def api_key(self) -> str:
        return self.sandbox.config.api_key


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; port 0 picks a free one. Bound before serving, so no readiness race."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _server(sandbox: Sandbox, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        sandbox.app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        limit_concurrency=None,
    )
    return uvicorn.Server(config)


@contextmanager
def running(sandbox: Sandbox, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningSandbox]:
    """Serve ``sandbox`` from a background thread for the duration of the block."""
    sock = bind(host, port)
    server = _server(sandbox, "critical")
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="synctera-sandbox", daemon=True
    )
    thread.start()
    try:
        yield RunningSandbox(sandbox, host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_forever(
    sandbox: Sandbox, *, host: str, port: int, port_file: Path | None = None, log_level: str = "warning"
) -> None:
    """Serve in the foreground until interrupted; ``port=0`` binds a free port, written to ``port_file``."""
    sock = bind(host, port)
    if port_file is not None:
        port_file.write_text(str(sock.getsockname()[1]))
    print(f"Synctera sandbox listening on http://{host}:{sock.getsockname()[1]}/v0", flush=True)
    _server(sandbox, log_level).run(sockets=[sock])
