"""The real servers the scale-out tests use, each test in a space of its own that is removed after:
a PostgreSQL database, a RabbitMQ virtual host. Hosts and ports can be overridden by environment; a
server that is not there fails the test in one line naming it, never skips it."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from pipelines.process_group import group
from pipelines.settings import REPO_ROOT

PG = {
    "host": os.environ.get("SYNCTERA_TEST_PG_HOST", "127.0.0.1"),
    "port": os.environ.get("SYNCTERA_TEST_PG_PORT", "5432"),
    "user": os.environ.get("SYNCTERA_TEST_PG_USER", "postgres"),
    "password": os.environ.get("SYNCTERA_TEST_PG_PASSWORD", ""),
}


def _admin() -> psycopg2.extensions.connection:
    try:
        connection = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        raise RuntimeError(
            f"PostgreSQL is not reachable at {PG['host']}:{PG['port']} as {PG['user']} ({first}): start it, "
            "e.g. pg_ctlcluster $(ls /etc/postgresql) main start, or set SYNCTERA_TEST_PG_HOST/PORT/USER"
        ) from None
    connection.autocommit = True
    return connection


@pytest.fixture
def database() -> Iterator[str]:
    """A database of this test's own, dropped after it (with whatever connections remain)."""
    with scratch_database() as name:
        yield name


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped when the block ends (with whatever connections remain)."""
    name = f"synctera_test_{secrets.token_hex(6)}"
    admin = _admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


AMQP = {
    "host": os.environ.get("SYNCTERA_TEST_AMQP_HOST", "127.0.0.1"),
    "port": os.environ.get("SYNCTERA_TEST_AMQP_PORT", "5672"),
    "user": os.environ.get("SYNCTERA_TEST_AMQP_USER", "guest"),
    "password": os.environ.get("SYNCTERA_TEST_AMQP_PASSWORD", "guest"),
}


def _rabbitmqctl(*args: str) -> None:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        raise RuntimeError(
            "rabbitmqctl is missing: install and start RabbitMQ (apt-get install rabbitmq-server)"
        )
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if done.returncode:
        first = (done.stderr or done.stdout).strip().splitlines()[:1]
        raise RuntimeError(f"RabbitMQ refused `rabbitmqctl {' '.join(args)}` ({first}): is it running?")


@pytest.fixture
def broker_url() -> Iterator[str]:
    """An AMQP URL to a RabbitMQ virtual host of this test's own, deleted after it."""
    with scratch_vhost() as url:
        yield url


@contextmanager
def scratch_vhost() -> Iterator[str]:
    """An AMQP URL to a new RabbitMQ virtual host, deleted when the block ends."""
    vhost = f"synctera-test-{secrets.token_hex(6)}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, AMQP["user"], ".*", ".*", ".*")
        yield f"pyamqp://{AMQP['user']}:{AMQP['password']}@{AMQP['host']}:{AMQP['port']}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


READY_SECONDS = 120
PG_VARIABLES = (
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
)
"""What ``pipelines/dagster.production.yaml`` reads the instance's database from."""


def instance_env(database: str) -> dict[str, str]:
    """The production instance's settings for ``database`` on the test server."""
    values = (PG["host"], PG["port"], PG["user"], PG["password"], database)
    return dict(zip(PG_VARIABLES, values, strict=True))


@contextmanager
def celery_worker(name: str, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m pipelines.worker`` in a process group of its own, ready when it says so; stopped
    with SIGTERM (Celery's warm shutdown), then SIGKILL."""
    command = [sys.executable, "-m", "pipelines.worker", "--name", name]
    with group(command, env=env, cwd=REPO_ROOT, log=log, first=signal.SIGTERM) as process:
        deadline = time.monotonic() + READY_SECONDS
        while b" ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)  # a poll interval, bounded by the deadline
        yield process


S3_REGION = "us-east-1"


@contextmanager
def s3_server(log: Path) -> Iterator[dict[str, str]]:
    """moto's standalone S3-compatible server on a free loopback port, in a process group of its own;
    yields the AWS settings that point botocore (s3fs, every child process) at it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with group(command, env=os.environ, cwd=REPO_ROOT, log=log, first=signal.SIGTERM) as process:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto's S3 server did not start:\n{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.1)  # a poll interval, bounded by the deadline
        yield {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "synctera-test",
            "AWS_SECRET_ACCESS_KEY": f"secret-{secrets.token_hex(12)}",
            "AWS_DEFAULT_REGION": S3_REGION,
            "AWS_REGION": S3_REGION,
        }


@pytest.fixture(scope="session")
def s3_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One S3-compatible server for the session (each test has a bucket of its own)."""
    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as settings:
        yield settings


@pytest.fixture
def bucket(s3_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``s3://<a bucket of this test's own>``, removed after it; this process's AWS settings point
    at the test server."""
    for name, value in s3_settings.items():
        monkeypatch.setenv(name, value)
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    name = f"synctera-test-{secrets.token_hex(6)}"
    fs.mkdir(name)
    try:
        yield f"s3://{name}"
    finally:
        fs.rm(name, recursive=True)
        s3fs.S3FileSystem.clear_instance_cache()
