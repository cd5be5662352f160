"""The production Dagster instance (pipelines/dagster.production.yaml) on a real PostgreSQL server:
a backfill's run, its events and the schedules live there and read back."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from pipelines.settings import REPO_ROOT

from .conftest import Pipeline, utc_today
from .services import PG, database

pytestmark = pytest.mark.scale_out
__all__ = ["database"]  # a fixture of services, used here

ONE_DAY = dt.timedelta(days=1)


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
