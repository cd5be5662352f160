"""Child processes each in a process group of its own, stopped by that group's id, never by name:
``dagster`` servers and Celery workers start children of their own, and they all go together."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def stop_group(process: subprocess.Popen[bytes], *, first: int = signal.SIGINT, grace: float = 60) -> None:
    """``first`` (SIGINT: as Ctrl-C would) to the group ``process`` leads, then SIGKILL to whatever of
    the group is left after ``grace`` seconds."""
    for sig, wait in ((first, grace), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.wait(timeout=30)


@contextmanager
def group(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, first: int = signal.SIGINT
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` in a new session (its own process group), its output in ``log``; stopped when the
    block ends (``stop_group``)."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - the caller's own argv
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_group(process, first=first)
