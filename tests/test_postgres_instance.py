"""The production Dagster instance (pipelines/dagster.production.yaml) on a real PostgreSQL server:
a backfill's run, its events and the schedules live there and read back."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from psycopg2 import sql

from pipelines.settings import REPO_ROOT

from .conftest import Pipeline, utc_today

pytestmark = pytest.mark.scale_out

ONE_DAY = dt.timedelta(days=1)
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


@pytest.fixture
def production_instance(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "pipelines" / "dagster.production.yaml", home / "dagster.yaml")
    for key, value in {
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": PG["port"],
        "DAGSTER_PG_USER": PG["user"],
        "DAGSTER_PG_PASSWORD": PG["password"],
        "DAGSTER_PG_DB": database,
    }.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_a_backfill_on_the_production_instance_keeps_its_run_events_and_schedules_in_postgres(
    pipeline: Pipeline, production_instance: dg.DagsterInstance, database: str
) -> None:
    instance = production_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    end = utc_today() - ONE_DAY
    result = pipeline.materialize(end - 2 * ONE_DAY, end, instance=instance)
    assert result.success

    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    records = instance.fetch_materializations(dg.AssetKey("transactions"), limit=100).records
    days = sorted(r.partition_key for r in records if r.partition_key)
    assert days == [(end - n * ONE_DAY).isoformat() for n in (2, 1, 0)]
    assert pipeline.last_run_tags["synctera/totals_of_run"] == result.run_id
    assert any("progress transactions:" in m for m in pipeline.last_run_log)

    # The rows are in this test's database, read through a connection of our own.
    connection = psycopg2.connect(dbname=database, **PG)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs WHERE run_id = %s", [result.run_id])
            assert cursor.fetchone() == (1,)
            cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", [result.run_id])
            (events,) = cursor.fetchone() or (0,)
    finally:
        connection.close()
    assert events > 10
    assert instance.all_instigator_state() == []  # the schedule storage answers (nothing started yet)
