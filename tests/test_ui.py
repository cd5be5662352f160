"""The Dagster UI in a real browser, as an operator uses it: Debian's chromium driven by Playwright,
against ``dagster dev`` (webserver and daemon) on the project's workspace and the sandbox.

Screenshots of every step are kept in the test's tmp dir (``screenshots/``). With
``SYNCTERA_UPDATE_SCREENSHOTS=1`` the two the README shows are refreshed in ``tests/screenshots``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill  # no public name
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from pipelines.lake import STAGING, TABLES, Lake
from pipelines.run import backfill_command
from pipelines.sandbox import Sandbox, SandboxConfig
from pipelines.sandbox.process import sandbox_process
from pipelines.settings import REPO_ROOT

from .conftest import assert_warehouse_matches, utc_today
from .ui.harness import DagsterUi, chromium, dagster_dev, new_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
expect.set_options(timeout=30_000)  # the UI loads its data over GraphQL after the page
ONE_DAY = dt.timedelta(days=1)
ASSETS = ("external_accounts", "transactions", "balances", "report")
CHECKS = {
    "external_accounts": ["listing_reached_last_page"],
    "transactions": ["unique_transaction_keys", "no_incomplete_days"],
    "balances": ["balance_error_rate", "balances_reconcile_with_transactions"],
}
SANDBOX = ["--accounts", "12", "--density", "light"]
"""Light accounts: no day at the cap, so that every check can pass."""
README_SHOTS = REPO_ROOT / "tests" / "screenshots"
WAIT_SECONDS = 300


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def shoot(tmp_path: Path) -> Callable[[Page, str], Path]:
    folder = tmp_path / "screenshots"
    folder.mkdir()

    def shoot(page: Page, name: str) -> Path:
        path = folder / f"{len(list(folder.iterdir())) + 1:02d}-{name}.png"
        page.screenshot(path=str(path))
        return path

    return shoot


def _env(base_url: str, key: str, **more: str) -> dict[str, str]:
    return {
        "SYNCTERA_BASE_URL": base_url,
        "SYNCTERA_API_KEY": key,
        "SYNCTERA_START_DATE": (utc_today() - 60 * ONE_DAY).isoformat(),
        **more,
    }


def _wait(what: str, done: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    """Poll ``done`` until it holds, for at most ``seconds``: the daemon works at its own pace."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {seconds} s")
        time.sleep(0.5)


def _backfill(ui: DagsterUi, *statuses: BulkActionStatus) -> PartitionBackfill:
    with ui.instance() as instance:
        found: list[object] = []

        def reached() -> bool:
            backfills = instance.get_backfills()
            found[:] = backfills
            return bool(backfills) and backfills[0].status in statuses

        _wait(f"a backfill in {statuses}", reached)
        return found[0]  # type: ignore[return-value]


def _launch(page: Page, start: dt.date, end: dt.date, shoot: Callable[[Page, str], Path]) -> Path:
    """The launch dialog (already open): type the range, check its size, launch."""
    dialog = page.get_by_role("dialog")
    days = (end - start).days + 1
    box = dialog.get_by_role("textbox").first
    box.fill(f"[{start.isoformat()}...{end.isoformat()}]")
    box.press("Enter")
    expect(dialog.get_by_text(f"{days} partitions")).to_be_visible()
    shot = shoot(page, "launch-dialog")
    dialog.get_by_role("button", name="Launch backfill").click()
    expect(page.get_by_text("Created backfill")).to_be_visible()
    return shot


def _keep_for_readme(shot: Path, name: str) -> None:
    if os.environ.get("SYNCTERA_UPDATE_SCREENSHOTS") != "1":
        return
    README_SHOTS.mkdir(exist_ok=True)
    with Image.open(shot) as image:
        image.thumbnail((960, 960))
        image.save(README_SHOTS / name, optimize=True)


def _files(data_dir: Path) -> dict[str, str]:
    """Every file of the lake and its content's digest (locks and work in progress aside)."""
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and ".locks" not in p.parts and STAGING not in p.parts
    }


def _only_whole_partitions(data_dir: Path) -> None:
    for table in TABLES:
        for path in (data_dir / table).glob("*/*"):
            assert path.name == "part-0.parquet", f"a file the views would read: {path}"


def test_a_backfill_launched_from_the_lineage_page_lands_exactly_those_days(
    browser: Browser, tmp_path: Path, shoot: Callable[[Page, str], Path]
) -> None:
    key = "sk_test_ui_" + os.urandom(6).hex()
    end = utc_today() - ONE_DAY
    start = end - 2 * ONE_DAY
    with sandbox_process(SANDBOX, api_key=key) as base_url, dagster_dev(tmp_path, _env(base_url, key)) as ui:
        page = new_page(browser, f"{ui.url}/asset-groups/synctera")
        for asset in ASSETS:
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        shoot(page, "lineage")
        for asset, checks in CHECKS.items():
            page.goto(f"{ui.url}/assets/{asset}?view=checks")
            for check in checks:  # long names are shown middle-truncated: the full text is in the page
                expect(page.get_by_text(check, exact=True).first).to_be_attached()

        page.goto(f"{ui.url}/asset-groups/synctera")
        page.get_by_role("button", name="Materialize all…").click()
        _launch(page, start, end, shoot)
        backfill = _backfill(ui, BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED)
        page.goto(f"{ui.url}/runs/b/{backfill.backfill_id}")
        expect(page.get_by_text("Completed").first).to_be_visible()
        done = shoot(page, "backfill-done")
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS

        assert Lake(ui.data_dir).partitions("transactions") == [start, start + ONE_DAY, end]
        truth = Sandbox(SandboxConfig(accounts=12, density="light", api_key=key))
        assert not assert_warehouse_matches(truth, ui.data_dir, start, end), "no capped day in light data"
        with ui.instance() as instance:
            for asset, checks in CHECKS.items():
                for check in checks:
                    (record,) = instance.event_log_storage.get_asset_check_execution_history(
                        dg.AssetCheckKey(dg.AssetKey(asset), check), limit=1
                    )
                    evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
                    assert evaluation.passed, f"{asset}.{check}: {evaluation.description}"
        page.goto(f"{ui.url}/assets/transactions?view=checks")
        expect(page.get_by_text("no_incomplete_days", exact=True).first).to_be_visible()
        checks_shot = shoot(page, "transactions-checks")
        _keep_for_readme(done, "backfill.png")
        _keep_for_readme(checks_shot, "transactions-checks.png")


def _cli_backfill(ui: DagsterUi, env: dict[str, str], start: dt.date, end: dt.date) -> None:
    command = backfill_command(start, end, select="transactions")
    finished = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={
            **os.environ,
            **env,
            "DAGSTER_HOME": str(ui.home),
            "SYNCTERA_DATA_DIR": str(ui.data_dir),
            "SYNCTERA_ACCOUNT_CONCURRENCY": "16",
        },
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]


def test_a_backfill_cancelled_from_the_ui_leaves_the_lake_as_it_was(
    browser: Browser, tmp_path: Path, shoot: Callable[[Page, str], Path]
) -> None:
    """Cancelled while it fetches (slow answers, one account at a time), the run writes nothing: the
    lake is byte for byte what it was, no temporary file is visible, its spool is gone with it, and a
    later run completes."""
    key = "sk_test_ui_" + os.urandom(6).hex()
    end = utc_today() - ONE_DAY
    # A fetch of about 110 s (9 accounts one at a time): room for the daemon's ~30 s tick.
    slow = [*SANDBOX, "--latency", "transactions=12"]
    with sandbox_process(slow, api_key=key) as base_url:
        env = _env(base_url, key, SYNCTERA_ACCOUNT_CONCURRENCY="1")
        with dagster_dev(tmp_path, env) as ui:
            _cli_backfill(ui, env, end - 4 * ONE_DAY, end)  # partitions a half-written run would spoil
            page = new_page(browser, f"{ui.url}/asset-groups/synctera")
            page.get_by_role("button", name="Materialize all…").click()
            _launch(page, end - 9 * ONE_DAY, end, shoot)
            with ui.instance() as instance:
                fetching: list[dg.DagsterRun] = []

                def transactions_fetching() -> bool:
                    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                        logs = [e.user_message or "" for e in instance.all_logs(run.run_id)]
                        if any("(end exclusive)" in m for m in logs):
                            fetching[:] = [run]
                            return True
                    return False

                _wait("the backfill's transactions run fetching", transactions_fetching)
                before = _files(ui.data_dir)
                backfill_id = instance.get_backfills()[0].backfill_id
                page.goto(f"{ui.url}/runs/b/{backfill_id}")
                page.get_by_role("button", name="expand_more").click()  # the backfill's menu
                page.get_by_role("menuitem", name="Cancel backfill").click()
                page.get_by_role("dialog").get_by_role("button", name="Cancel backfill").click()
                run_id = fetching[0].run_id
                _wait(
                    "the run cancelled",
                    lambda: (
                        instance.get_run_by_id(run_id).status  # type: ignore[union-attr]
                        in (
                            dg.DagsterRunStatus.CANCELED,
                            dg.DagsterRunStatus.FAILURE,
                            dg.DagsterRunStatus.SUCCESS,
                        )
                    ),
                )
                assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED  # type: ignore[union-attr]
                failures = [
                    str(e.dagster_event.event_specific_data)
                    for e in instance.all_logs(run_id)
                    if e.dagster_event is not None and e.dagster_event.is_step_failure
                ]
                # Stopped by Dagster's interrupt or by the run's own check, whichever came first.
                assert failures, "the fetch was stopped, not finished"
                assert all("Interrupt" in f or "cancelled while fetching" in f for f in failures), failures
            backfill = _backfill(ui, BulkActionStatus.CANCELED)
            page.goto(f"{ui.url}/runs/b/{backfill.backfill_id}")
            expect(page.get_by_text("Canceled").first).to_be_visible()
            shoot(page, "backfill-cancelled")

            _only_whole_partitions(ui.data_dir)
            after = _files(ui.data_dir)
            assert after == before, "the lake is byte for byte as it was"
            assert not list((ui.data_dir / STAGING).iterdir()), "the cancelled run took its spool with it"
            _cli_backfill(ui, env, end - ONE_DAY, end)  # a later run completes
            assert not list((ui.data_dir / STAGING).iterdir())
