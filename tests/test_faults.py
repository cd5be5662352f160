"""The fault matrix: faults and bad answers from the API, and bad input from people, end to end.

Each test runs real Dagster materializations against the sandbox with its fault knobs, and checks
the outcome an operator or analyst would see: exact data, or a loud failure that names the account
and window, with nothing half-written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import dagster as dg
import pytest

from assets.resources import IngestResource, SyncteraApi

from .conftest import Pipeline, assert_matches_ground_truth, utc_today, warehouse_rows

ONE_DAY = dt.timedelta(days=1)
END = utc_today() - ONE_DAY  # yesterday: the newest partition
STORM = {
    "429-header": 0.03,
    "429-date": 0.02,
    "429-body": 0.03,
    "429-none": 0.02,
    "429-zero": 0.02,
    "500": 0.02,
    "502": 0.02,
    "503": 0.03,
    "504": 0.02,
    "drop": 0.03,
    "slow": 0.01,
    "bad-json": 0.01,
    "html-200": 0.01,
}


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run was expected to fail"
    error = failures[0].step_failure_data.error
    assert error is not None
    return str(error.message) + "".join(str(c.message) for c in _causes(error))


def _causes(error: Any) -> list[Any]:
    chain = []
    while error.cause is not None:
        chain.append(error.cause)
        error = error.cause
    return chain


@pytest.mark.slow
def test_a_fault_storm_still_yields_exactly_the_ground_truth(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline(fault_rates=STORM, slow_seconds=1.5)
    pipeline.retry_attempts = 12
    start = END - 13 * ONE_DAY
    result = pipeline.materialize(start, END, synctera={"timeout_seconds": 1.0})
    assert result.success
    assert_matches_ground_truth(pipeline, start, END)
    faults = [r for r in pipeline.sandbox.records() if r.fault]
    assert len(faults) > 10
    assert int(pipeline.last_run_tags["synctera/api_retries"]) > 0
    ledger = warehouse_rows(pipeline, "SELECT max(attempts) FROM transaction_windows")
    assert ledger[0][0] > 1, "the ledger records windows that needed retries"


def test_exhausted_retries_fail_loudly_and_a_rerun_completes(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline()
    start = END - 4 * ONE_DAY
    assert pipeline.materialize(start, END).success
    before = warehouse_rows(pipeline, "SELECT account_id, transaction_id FROM transactions ORDER BY ALL")

    pipeline.sandbox.faults.inject(["503"] * 1000, endpoint="transactions")
    failed = pipeline.materialize(start, END)
    assert not failed.success
    text = _failure_text(failed)
    assert "account " in text and "window " in text and "503" in text
    assert (
        warehouse_rows(pipeline, "SELECT account_id, transaction_id FROM transactions ORDER BY ALL") == before
    )

    pipeline.sandbox.faults.clear()
    assert pipeline.materialize(start, END).success
    assert_matches_ground_truth(pipeline, start, END)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("outside-window", "outside the window"),
        ("wrong-type", "transactions.0.amount: Input should be a valid integer"),
        ("missing-field", "transactions: Field required"),
        ("bad-json", "Invalid JSON"),
        ("html-200", "expected a JSON body, got content type 'text/html"),
        ("huge", "the body is larger than"),
    ],
)
def test_a_persistently_bad_answer_fails_the_run_naming_account_and_window(
    make_pipeline: Callable[..., Pipeline], kind: str, expected: str
) -> None:
    pipeline = make_pipeline(
        fault_rates={kind: 1.0}, fault_endpoints=frozenset({"transactions"}), huge_bytes=300_000
    )
    result = pipeline.materialize(END - ONE_DAY, END, synctera={"max_response_bytes": 200_000})
    assert not result.success
    text = _failure_text(result)
    assert expected in text
    assert "account " in text and "window " in text
    assert not pipeline.lake.partitions("transactions"), "nothing half-written"


def test_a_page_token_cycle_fails_the_listing(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline(
        accounts=150, fault_rates={"page-cycle": 1.0}, fault_endpoints=frozenset({"list"})
    )
    result = pipeline.materialize(END, END)
    assert not result.success
    assert "cycle" in _failure_text(result)
    assert not pipeline.lake.partitions("external_accounts")


def test_a_listing_that_repeats_accounts_is_deduplicated_and_flagged(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(accounts=150)
    pipeline.sandbox.faults.inject(["repeat-accounts"], endpoint="list")
    pipeline.sandbox.faults.inject([], endpoint="list")
    result = pipeline.materialize(END, END)
    assert result.success
    ids = [r[0] for r in warehouse_rows(pipeline, "SELECT account_id FROM external_accounts")]
    assert len(ids) == len(set(ids)) == len(pipeline.sandbox.accounts())
    check = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "listing_reached_last_page"
    )
    assert not check.passed
    assert check.metadata["repeated_accounts"].value == 1


def test_schema_drift_new_fields_are_kept_and_missing_optional_fields_are_null(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(
        fault_rates={"new-field": 1.0}, fault_endpoints=frozenset({"transactions", "list"})
    )
    assert pipeline.materialize(END - ONE_DAY, END).success
    extras = warehouse_rows(pipeline, "SELECT DISTINCT extra FROM transactions")
    assert extras == [('{"field_from_the_future": {"flag": true, "version": "0.999.0"}}',)]
    assert warehouse_rows(pipeline, "SELECT count(*) FROM external_accounts WHERE extra IS NULL") == [(0,)]

    drifted = make_pipeline(
        fault_rates={"missing-optional": 1.0}, fault_endpoints=frozenset({"transactions"})
    )
    assert drifted.materialize(END - ONE_DAY, END).success
    assert (
        warehouse_rows(
            drifted,
            "SELECT count(*) FILTER (merchant_name IS NOT NULL OR category IS NOT NULL) FROM transactions",
        )[0][0]
        == 0
    )
    assert_matches_ground_truth(drifted, END - ONE_DAY, END)


def test_a_partition_outside_the_definition_fails_before_any_call(pipeline: Pipeline) -> None:
    for start, end in [(utc_today(), utc_today() + ONE_DAY), (dt.date(2000, 1, 1), dt.date(2000, 1, 2))]:
        result = pipeline.materialize(start, end)
        assert not result.success
        assert "outside the definition" in _failure_text(result)
    assert pipeline.sandbox.records() == []


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (lambda: IngestResource(max_age=-1), "max_age"),
        (lambda: IngestResource(account_concurrency=0), "account_concurrency"),
        (lambda: SyncteraApi(base_url="not a url").check(), "invalid Synctera base URL"),
        (lambda: SyncteraApi(base_url="https://api.synctera.com/v0").check(), "SYNCTERA_API_KEY"),
    ],
)
def test_bad_configuration_is_a_clear_error_before_any_call(
    resource: Callable[[], object], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        resource()


def test_a_malformed_base_url_fails_the_run_before_any_call(pipeline: Pipeline) -> None:
    result = pipeline.materialize(END, END, synctera={"base_url": "ftp://example/v0"})
    assert not result.success
    assert pipeline.sandbox.records() == []


def test_the_resource_never_shows_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk_live_never_show_0123456789"
    monkeypatch.setenv("SYNCTERA_API_KEY", secret)
    resource = SyncteraApi(base_url="https://api.synctera.com/v0", api_key=dg.EnvVar("SYNCTERA_API_KEY"))
    with dg.build_resources({"synctera": resource}) as resolved:
        live = resolved.synctera
        assert live.api_key == secret
        texts = [repr(resource), str(resource), repr(live), str(live), repr(live.client())]
    assert all(secret not in text for text in texts)
