"""The sandbox itself: deterministic data with the promised shape, its knobs and its command line."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pipelines.sandbox import Sandbox, SandboxConfig

from .conftest import TODAY

ONE_DAY = dt.timedelta(days=1)


def _config(**overrides: object) -> SandboxConfig:
    options: dict[str, object] = {"seed": 7, "accounts": 60, "history_days": 120, "today": TODAY}
    return SandboxConfig(**{**options, **overrides})  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_data() -> None:
    a, b = Sandbox(_config()), Sandbox(_config())
    assert a.accounts(include_history=True) == b.accounts(include_history=True)
    account_id = a.world.accounts[7]["id"]
    for days_ago in (1, 30, 90):
        day = TODAY - days_ago * ONE_DAY
        assert a.true_transactions(account_id, day) == b.true_transactions(account_id, day)
    other = Sandbox(_config(seed=8))
    assert other.world.accounts[7]["id"] != account_id


def test_density_is_skewed_with_idle_light_heavy_and_capped_days() -> None:
    sandbox = Sandbox(_config(accounts=200))
    per_account = {
        account_id: [sandbox.world.generated_count(account_id, TODAY - d * ONE_DAY) for d in range(1, 91)]
        for account_id in sandbox.world.profiles
    }
    means = sorted(sum(counts) / len(counts) for counts in per_account.values())
    assert means[0] == 0, "some accounts have no transactions"
    assert means[len(means) // 2] < 10, "most accounts have a few per day"
    assert means[-1] > 50, "some accounts are heavy"
    all_days = [c for counts in per_account.values() for c in counts]
    assert {499, 500} <= set(all_days)
    assert max(all_days) > 500


def test_pending_transactions_only_in_the_last_days() -> None:
    sandbox = Sandbox(_config(density="heavy", accounts=3))
    account_id = sandbox.world.accounts[0]["id"]
    recent = sandbox.true_transactions(account_id, TODAY - ONE_DAY)
    older = sandbox.true_transactions(account_id, TODAY - 5 * ONE_DAY)
    assert recent and all(t["is_pending"] for t in recent)
    assert older and not any(t["is_pending"] for t in older)
    assert sandbox.true_transactions(account_id, TODAY + ONE_DAY) == []


def test_late_postings_appear_on_later_days_and_pending_settles() -> None:
    sandbox = Sandbox(_config(density="heavy", accounts=3))
    account_id = sandbox.world.accounts[0]["id"]
    day = TODAY - ONE_DAY
    before = {t["transaction_id"]: t for t in sandbox.true_transactions(account_id, day)}
    sandbox.today = TODAY + 3 * ONE_DAY
    after = {t["transaction_id"]: t for t in sandbox.true_transactions(account_id, day)}
    assert set(before) < set(after), "late transactions were added, none removed"
    assert not any(t["is_pending"] for t in after.values())


def test_thousands_of_accounts_with_years_of_history_start_lazily() -> None:
    sandbox = Sandbox(_config(accounts=5000, history_days=1500))
    assert len(sandbox.accounts(include_history=True)) == 5000
    assert sandbox.world._counts == {}, "no transaction counts are drawn until asked for"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"density": "dense"}, "unknown density"),
        ({"fault_rates": {"418": 0.1}}, "unknown fault"),
        ({"fault_rates": {"503": 1.5}}, "within"),
        ({"latency": {"payments": 1}}, "unknown endpoint"),
        ({"api_key": ""}, "api_key"),
    ],
)
def test_bad_knobs_are_refused_with_the_reason(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_random_fault_rates_hit_retries_too() -> None:
    sandbox = Sandbox(_config(fault_rates={"503": 1.0}, fault_endpoints=frozenset({"balance"})))
    assert [sandbox.faults.draw("balance") for _ in range(3)] == ["503"] * 3
    assert sandbox.faults.draw("list") is None


def test_command_line_serves_until_stopped(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "SYNCTERA_SANDBOX_API_KEY": "cli-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.sandbox", "--port", "0", "--port-file", str(port_file),
         "--accounts", "12", "--today", TODAY.isoformat()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once the socket is listening
        port = int(port_file.read_text())
        assert f"http://127.0.0.1:{port}/v0" in banner
        response = httpx.get(
            f"http://127.0.0.1:{port}/v0/external_accounts", headers={"Authorization": "Bearer cli-key"}
        )
        assert response.status_code == 200
        assert len(response.json()["external_accounts"]) <= 12
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_command_line_help_lists_the_knobs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.sandbox", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--seed", "--accounts", "--history-days", "--density", "--latency", "--fault", "--today"):
        assert flag in result.stdout
