"""The report and the analysts' example queries, on a warehouse written by a real run."""

from __future__ import annotations

import base64
import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

from pipelines import warehouse
from pipelines.settings import REPO_ROOT

from .conftest import Pipeline, utc_today, warehouse_rows

ONE_DAY = dt.timedelta(days=1)
PNG = b"\x89PNG\r\n\x1a\n"


def test_every_example_query_runs_against_a_real_warehouse(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    assert pipeline.materialize(end - 13 * ONE_DAY, end).success
    names = sorted(p.stem for p in warehouse.QUERIES.glob("*.sql"))
    assert len(names) >= 6
    connection = pipeline.warehouse()
    try:
        results = {name: connection.execute(warehouse.query(name)).fetchall() for name in names}
    finally:
        connection.close()
    assert all(results[name] for name in names if name != "incomplete_days"), "each query finds rows"
    (posted,) = warehouse_rows(pipeline, "SELECT count(*) FROM transactions WHERE NOT is_pending")[0]
    assert sum(row[2] for row in results["daily_flow"]) == posted
    statuses = {row[2] for row in results["completeness"]}
    assert statuses <= {"complete", "flagged"}
    (flagged,) = warehouse_rows(
        pipeline, "SELECT count(*) FROM transaction_windows WHERE outcome = 'flagged'"
    )[0]
    assert sum(row[2] == "flagged" for row in results["completeness"]) == flagged
    assert (
        len(results["runs"]) == 1
        and results["runs"][0][2]
        == warehouse_rows(pipeline, "SELECT count(*) FROM transaction_windows")[0][0]
    )
    accounts = {r[0] for r in warehouse_rows(pipeline, "SELECT account_id FROM balances WHERE error IS NULL")}
    assert {row[0] for row in results["latest_balances"]} == accounts


def test_the_report_asset_shows_the_figures_and_writes_the_page(pipeline: Pipeline) -> None:
    end = utc_today() - ONE_DAY
    result = pipeline.materialize(end - 6 * ONE_DAY, end)
    assert result.success
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["report"]]
    figures = event.materialization.metadata["figures"].value
    images = re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", str(figures))
    assert [name for name, _ in images] == ["daily_flow", "balance_history", "completeness", "runs"]
    assert all(base64.b64decode(data).startswith(PNG) for _, data in images)
    page = pipeline.data_dir / "report" / "report.html"
    text = page.read_text()
    for name, _ in images:
        assert f'src="{name}.png"' in text
        assert (page.parent / f"{name}.png").read_bytes().startswith(PNG)


def test_make_report_renders_from_any_directory(pipeline: Pipeline, tmp_path: Path) -> None:
    end = utc_today() - ONE_DAY
    assert pipeline.materialize(end - 2 * ONE_DAY, end).success
    out = tmp_path / "elsewhere" / "out"
    finished = subprocess.run(
        [sys.executable, "-m", "pipelines.report", "--data-dir", str(pipeline.data_dir), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert finished.returncode == 0, finished.stderr
    assert (out / "report.html").exists() and (out / "completeness.png").read_bytes().startswith(PNG)


def test_make_report_without_a_warehouse_says_what_to_do(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "pipelines.report", "--data-dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 2
    assert "no warehouse at" in finished.stderr and "make run" in finished.stderr
