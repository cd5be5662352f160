"""The sandbox in a child process (its own CPU, like the real API): for ``make run`` and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def sandbox_process(args: Sequence[str] = (), *, api_key: str | None = None) -> Iterator[str]:
    """Start ``python -m pipelines.sandbox`` on a free loopback port; yield its base URL (…/v0).

    The child prints its banner only once its socket listens, so reading that line is the readiness
    signal. It is stopped (SIGINT, then SIGKILL) when the block ends.
    """
    env = dict(os.environ)
    if api_key is not None:
        env["SYNCTERA_SANDBOX_API_KEY"] = api_key
    with tempfile.TemporaryDirectory() as scratch:
        port_file = Path(scratch) / "port"
        command = [
            sys.executable,
            "-m",
            "pipelines.sandbox",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            *args,
        ]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)  # noqa: S603 - fixed argv
        try:
            assert child.stdout is not None
            banner = child.stdout.readline()
            if not banner or not port_file.exists():
                raise RuntimeError(f"the sandbox did not start (exit code {child.poll()})")
            yield f"http://127.0.0.1:{int(port_file.read_text())}/v0"
        finally:
            child.send_signal(signal.SIGINT)
            try:
                child.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
