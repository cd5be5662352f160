"""``python -m pipelines.worker``: a Celery worker for Dagster's Celery executor, on any machine.

Each worker takes steps of runs from the broker (``SYNCTERA_CELERY_BROKER``, e.g.
``amqp://user:password@rabbit:5672/vhost`` or ``redis://host:6379/0``) and executes them with this
code. It needs what a run needs: ``DAGSTER_HOME`` with the shared instance (PostgreSQL in a
deployment), the ``SYNCTERA_*`` settings and the lake. Start as many as the API's budget allows.

    python -m pipelines.worker                   # one step at a time
    python -m pipelines.worker --concurrency 2   # two processes taking steps
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import uuid
from pathlib import Path

from pipelines.settings import ConfigError, celery_broker_from_env

CONFIG_DIR = Path(__file__).with_name("celery_config")
QUEUE = "dagster"  # dagster_celery's default queue


def worker_command(*, concurrency: int, name: str) -> list[str]:
    """The ``celery worker`` command line (the executable beside this interpreter)."""
    return [
        str(Path(sys.executable).parent / "celery"),
        "--app", "dagster_celery.app", "worker",
        "--queues", QUEUE,
        "--concurrency", str(concurrency),
        "--prefetch-multiplier", "1",
        "--hostname", name,
        "--loglevel", "INFO",
    ]  # fmt: skip


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this project's Celery settings on ``PYTHONPATH`` (found by module name)."""
    path = os.pathsep.join(p for p in (str(CONFIG_DIR), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=1, help="steps at once (processes)")
    parser.add_argument("--name", default=None, help="worker name (default synctera-<host>-<random>)")
    args = parser.parse_args(argv)
    try:
        celery_broker_from_env()
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    name = args.name or f"synctera-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    command = worker_command(concurrency=args.concurrency, name=name)
    os.execve(command[0], command, worker_env(dict(os.environ)))  # noqa: S606 - our own fixed argv


if __name__ == "__main__":
    main()
