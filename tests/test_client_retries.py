"""Errors, retries, idempotency and secrecy of the client, over real HTTP against the sandbox."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from pipelines.sandbox import RunningSandbox
from pipelines.synctera import (
    AuthenticationError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SyncteraClient,
    TransportError,
    UnprocessableEntityError,
)

from .conftest import FAST_RETRY
from .test_client_accounts import NEW_ACCOUNT


@pytest.mark.parametrize(
    "fault",
    ["429-header", "429-date", "429-body", "429-none", "429-zero", "500", "502", "503", "504", "drop"],
)
def test_retryable_faults_are_retried_until_success(client: SyncteraClient, sandbox, fault: str) -> None:
    sandbox.faults.inject([fault, fault], endpoint="list")
    page = client.list_external_accounts(limit=3)
    assert len(page.external_accounts) == 3
    sent = sandbox.records("list")
    assert [r.fault for r in sent] == [fault, fault, None]
    stats = client.stats_snapshot()
    assert stats.requests["listExternalAccounts"] == 3
    assert stats.retries["listExternalAccounts"] == 2


def test_retries_stop_after_max_attempts_and_name_the_call(
    start_sandbox: Callable[..., RunningSandbox],
) -> None:
    server = start_sandbox()
    server.sandbox.faults.inject(["503"] * 10, endpoint="get")
    policy = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.001)
    with (
        SyncteraClient(base_url=server.base_url, api_key=server.api_key, retry=policy) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.get_external_account("abc")
    assert caught.value.attempts == 3
    assert caught.value.status == 503
    assert "GET /v0/external_accounts/abc -> 503" in str(caught.value)
    assert len(server.sandbox.records("get")) == 3


def test_rate_limit_that_never_ends_raises_rate_limit_error(client: SyncteraClient, sandbox) -> None:
    sandbox.faults.inject(["429-body"] * 5, endpoint="list")
    with pytest.raises(RateLimitError) as caught:
        client.list_external_accounts()
    assert caught.value.attempts == FAST_RETRY.max_attempts
    assert caught.value.code == "TOO_MANY_REQUESTS"


def test_dropped_connections_every_time_become_a_transport_error(client: SyncteraClient, sandbox) -> None:
    sandbox.faults.inject(["drop"] * 5, endpoint="balance")
    with pytest.raises(TransportError) as caught:
        client.get_external_account_balance(sandbox.accounts()[0]["id"], max_age=10**9)
    assert caught.value.attempts == 5
    assert "RemoteProtocolError" in caught.value.reason


def test_slow_answer_past_the_timeout_is_retried(start_sandbox: Callable[..., RunningSandbox]) -> None:
    server = start_sandbox(slow_seconds=1.0)
    server.sandbox.faults.inject(["slow"], endpoint="list")
    with SyncteraClient(
        base_url=server.base_url, api_key=server.api_key, retry=FAST_RETRY, timeout=0.3
    ) as client:
        page = client.list_external_accounts(limit=1)
    assert len(page.external_accounts) == 1
    assert client.stats_snapshot().retries == {"listExternalAccounts": 1}


def test_client_errors_are_not_retried(client: SyncteraClient, sandbox) -> None:
    with pytest.raises(UnprocessableEntityError):
        client.update_external_account(
            next(a["id"] for a in sandbox.accounts() if a["verification"]["status"] == "VERIFIED"),
            {"nickname": "x"},
        )
    assert len(sandbox.records("patch")) == 1


def test_wrong_key_is_an_authentication_error_that_does_not_show_the_key(server: RunningSandbox) -> None:
    wrong = "sk_test_wrong_0123456789abcdef"
    with SyncteraClient(base_url=server.base_url, api_key=wrong) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.list_external_accounts()
        assert wrong not in repr(client)
    assert caught.value.status == 401
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)


def test_idempotency_key_is_the_same_on_every_retry(client: SyncteraClient, sandbox) -> None:
    sandbox.faults.inject(["503", "drop"], endpoint="add")
    account = client.add_external_accounts(NEW_ACCOUNT)
    keys = [r.idempotency_key for r in sandbox.records("add")]
    assert len(keys) == 3
    assert keys[0] and len(set(keys)) == 1
    ids = [a["id"] for a in sandbox.accounts() if a.get("customer_id") == NEW_ACCOUNT["customer_id"]]
    assert ids == [account.id], "the dropped attempt created the account; the retry replayed it"


def test_same_key_and_payload_replays_the_first_answer(client: SyncteraClient, sandbox) -> None:
    first = client.add_external_accounts(NEW_ACCOUNT, idempotency_key="key-1")
    again = client.add_external_accounts(NEW_ACCOUNT, idempotency_key="key-1")
    assert again.id == first.id
    assert len([a for a in sandbox.accounts() if a["id"] == first.id]) == 1


def test_same_key_with_another_payload_is_refused(client: SyncteraClient) -> None:
    client.add_external_accounts(NEW_ACCOUNT, idempotency_key="key-2")
    other = {**NEW_ACCOUNT, "account_identifiers": {"number": "999999999"}}
    with pytest.raises(UnprocessableEntityError) as caught:
        client.add_external_accounts(other, idempotency_key="key-2")
    assert caught.value.code == "IDEMPOTENCY_INVALID_REUSE"


def test_each_logical_call_gets_its_own_key(client: SyncteraClient, sandbox) -> None:
    client.update_external_account(client.add_external_accounts(NEW_ACCOUNT).id, {"nickname": "a"})
    keys = [r.idempotency_key for r in sandbox.records() if r.method in ("POST", "PATCH")]
    assert len(keys) == 2 and len(set(keys)) == 2


def test_api_key_appears_in_no_log_record_or_error(
    client: SyncteraClient, sandbox, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.faults.inject(["503", "429-header", "drop", "502"], endpoint=None)
    account_id = sandbox.accounts()[0]["id"]
    texts = []
    client.list_external_accounts()
    for call in (
        lambda: client.get_external_account("missing"),
        lambda: client.get_external_account_balance(account_id, max_age=0),
        lambda: client.add_external_accounts({**NEW_ACCOUNT, "type": "CHECKING"}, idempotency_key="k"),
        lambda: client.add_external_accounts({**NEW_ACCOUNT, "type": "SAVINGS"}, idempotency_key="k"),
    ):
        try:
            call()
        except Exception as exc:
            texts += [str(exc), repr(exc), repr(exc.__cause__)]
    texts += [repr(client), str(client.stats_snapshot())]
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    assert any("Retrying" in t for t in texts), "the faults did produce retry logs"
    assert all(api_key not in t for t in texts)
