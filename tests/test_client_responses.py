"""How the client reads odd answers. A transport-level fake stands in for the server here, because
these answers (cycles, wrong types, wrong content types) are ones the sandbox does not give."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from pipelines.synctera import (
    ApiError,
    InvalidResponseError,
    PaginationError,
    ServerError,
    SyncteraClient,
)
from pipelines.synctera.rows import ExtendedTransaction

from .conftest import FAST_RETRY

KEY = "sk_test_fake_transport_key"
ACCOUNT = {
    "id": "acc-1",
    "account_identifiers": {"number": "1234"},
    "account_owner_names": [],
    "creation_time": "2026-01-01T00:00:00Z",
    "last_updated_time": "2026-01-01T00:00:00+01:00",
    "routing_identifiers": {"bank_countries": ["US"], "bank_name": "B"},
    "status": "ACTIVE",
    "type": "CHECKING",
    "verification": None,
}


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> SyncteraClient:
    return SyncteraClient(
        base_url="https://api.example.test/v0",
        api_key=KEY,
        retry=FAST_RETRY,
        transport=httpx.MockTransport(handler),
    )


def _json(payload: object, status: int = 200, content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(payload).encode(), headers={"content-type": content_type}
    )


def _pages(tokens: list[str | None]) -> Callable[[httpx.Request], httpx.Response]:
    """Page n answers with next_page_token tokens[n]."""
    order = [None, *tokens]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        index = order.index(request.url.params.get("page_token"))
        body: dict[str, object] = {"external_accounts": [{**ACCOUNT, "id": f"acc-{index}"}]}
        if tokens[index] is not None:
            body["next_page_token"] = tokens[index]
        return _json(body)

    return handler


def test_listing_ends_when_the_token_is_absent() -> None:
    ids = [a.id for a in _client(_pages(["t1", "t2", None])).iter_external_accounts()]
    assert ids == ["acc-0", "acc-1", "acc-2"]


def test_a_token_cycle_is_an_error_not_an_endless_loop() -> None:
    # t1 -> t2 -> t1: a cycle of length two, which a check of only the previous token would miss.
    handler = _pages(["t1", "t2", "t1"])
    with pytest.raises(PaginationError, match="cycle"):
        list(_client(handler).iter_external_accounts())


def test_a_listing_that_never_ends_is_cut_at_max_pages_with_a_named_error() -> None:
    served = 0

    def endless(request: httpx.Request) -> httpx.Response:
        nonlocal served
        served += 1  # a new token every time: no cycle to detect
        return _json(
            {"external_accounts": [{**ACCOUNT, "id": f"acc-{served}"}], "next_page_token": f"t{served}"}
        )

    with pytest.raises(PaginationError, match=r"did not end after 25 pages \(max_pages\)"):
        list(_client(endless).iter_external_account_pages(max_pages=25))
    assert served == 25


def test_requests_accept_the_problem_json_the_spec_documents_for_errors() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept"])
        return _json({"status": 404, "title": "Not Found"}, 404, "application/problem+json")

    with pytest.raises(ApiError):
        _client(handler).get_external_account("acc-1")
    accepted = {kind.strip() for kind in seen[0].split(",")}
    assert {"application/json", "application/problem+json"} <= accepted


def test_an_empty_token_is_an_error() -> None:
    with pytest.raises(PaginationError, match="empty"):
        list(_client(_pages([""])).iter_external_accounts())


def test_null_verification_unknown_fields_and_offsets_parse() -> None:
    payload = {"external_accounts": [{**ACCOUNT, "brand_new_field": {"x": 1}}]}
    page = _client(lambda r: _json(payload)).list_external_accounts()
    account = page.external_accounts[0]
    assert account.verification is None
    assert account.model_extra == {"brand_new_field": {"x": 1}}
    assert account.nickname is None
    assert account.last_updated_time.utcoffset() is not None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"transactions": [{"amount": "10.00"}]}, "transactions.0.amount: Input should be a valid integer"),
        ({"transactions": [{"amount": 10.5}]}, "transactions.0.amount"),
        ({"transactions": [{"amount": 2**63}]}, "transactions.0.amount"),
        ({"transactions": [{"date": "20/11/2026"}]}, "transactions.0.date"),
        ({"transactions": [{"is_pending": "yes"}]}, "transactions.0.is_pending"),
        ({"transactions": [{"category": "Travel"}]}, "transactions.0.category"),
        ({"transactions": [{"transaction_id": 17}]}, "transactions.0.transaction_id"),
        ({"rows": []}, "transactions: Field required"),
    ],
)
@pytest.mark.parametrize("path", ["models", "rows", "batch"])
def test_type_changes_fail_loudly(payload: object, reason: str, path: str) -> None:
    """The bulk paths (rows as dicts, rows decoded straight from the bytes) check exactly what the
    typed models check, and say so in the same words."""
    import datetime as dt

    client = _client(lambda r: _json(payload))
    call = {
        "models": client.get_external_account_transactions,
        "rows": client.get_external_account_transaction_rows,
        "batch": client.get_external_account_transaction_batch,
    }[path]
    with pytest.raises(InvalidResponseError) as caught:
        call("a", start_date=dt.date(2026, 1, 1), end_date=dt.date(2026, 1, 2))
    assert reason in str(caught.value)
    assert "/v0/external_accounts/a/transactions?start_date=2026-01-01&end_date=2026-01-02" in str(
        caught.value
    )


def test_rows_keep_unknown_fields_and_leave_absent_ones_out() -> None:
    import datetime as dt

    payload = {"transactions": [{"transaction_id": "t", "date": "2026-01-01", "amount": 5, "new": [1]}]}
    client = _client(lambda r: _json(payload))
    answer = client.get_external_account_transaction_rows(
        "a", start_date=dt.date(2026, 1, 1), end_date=dt.date(2026, 1, 2)
    )
    assert answer.transactions == [
        {"transaction_id": "t", "date": dt.date(2026, 1, 1), "amount": 5, "new": [1]}
    ]
    batch = client.get_external_account_transaction_batch(
        "a", start_date=dt.date(2026, 1, 1), end_date=dt.date(2026, 1, 2)
    )
    assert batch.transactions == [
        ExtendedTransaction(transaction_id="t", date=dt.date(2026, 1, 1), amount=5, extra='{"new": [1]}')
    ]


def test_malformed_json_and_wrong_content_type_fail_loudly() -> None:
    broken = _client(
        lambda r: httpx.Response(
            200, content=b'{"external_accounts": [', headers={"content-type": "application/json"}
        )
    )
    with pytest.raises(InvalidResponseError, match="Invalid JSON"):
        broken.list_external_accounts()
    html = _client(
        lambda r: httpx.Response(200, content=b"<html>login</html>", headers={"content-type": "text/html"})
    )
    with pytest.raises(InvalidResponseError, match="text/html"):
        html.list_external_accounts()


def test_html_error_page_becomes_an_api_error_with_an_excerpt() -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    client = _client(lambda r: httpx.Response(502, content=page, headers={"content-type": "text/html"}))
    with pytest.raises(ServerError) as caught:
        client.list_external_accounts()
    assert caught.value.problem is None
    assert "502 Bad Gateway" in str(caught.value)
    assert caught.value.attempts == FAST_RETRY.max_attempts


def test_a_server_echoing_the_key_is_scrubbed_from_errors() -> None:
    client = _client(
        lambda r: _json({"title": "Bad", "detail": f"bad token {KEY}"}, 400, "application/problem+json")
    )
    with pytest.raises(ApiError) as caught:
        client.list_external_accounts()
    assert KEY not in str(caught.value)
    assert "****" in str(caught.value)


def test_path_ids_are_encoded_whatever_their_format() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return _json(ACCOUNT)

    _client(handler).get_external_account("a/b?c d")
    assert seen == ["/v0/external_accounts/a%2Fb%3Fc%20d"]


@pytest.mark.parametrize("url", ["ftp://x/v0", "not a url", "https:///v0", "https://h/v0?x=1"])
def test_malformed_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="invalid Synctera base URL"):
        SyncteraClient(base_url=url, api_key=KEY)


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="SYNCTERA_API_KEY"):
        SyncteraClient(base_url="https://h/v0", api_key=" ")


def test_a_key_with_a_trailing_newline_is_stripped_and_works() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return _json({"external_accounts": []})

    client = SyncteraClient(
        base_url="https://h/v0", api_key=KEY + "\n", transport=httpx.MockTransport(handler)
    )
    client.list_external_accounts()
    assert seen == [f"Bearer {KEY}"]


@pytest.mark.parametrize("bad", ["sk test", "sk\ttest", "sk\x00test", "sk_tëst"])
def test_a_key_with_inner_whitespace_or_control_characters_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(ValueError, match="whitespace or control") as caught:
        SyncteraClient(base_url="https://h/v0", api_key=bad)
    assert bad not in str(caught.value)


def test_an_undecodable_body_is_an_invalid_response_not_a_bare_httpx_error() -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-encoding": "gzip", "content-type": "application/json"},
            stream=httpx.ByteStream(b"not gzip at all"),
        )

    client = _client(garbage)
    with pytest.raises(InvalidResponseError, match="could not be decoded") as caught:
        client.list_external_accounts()
    assert caught.value.attempts == FAST_RETRY.max_attempts, "a broken read is retried"


def test_a_write_still_in_progress_under_its_idempotency_key_is_asked_again() -> None:
    answers = [
        _json({"code": "IDEMPOTENCY_CONCURRENT_USE", "status": 422}, 422, "application/problem+json"),
        _json(ACCOUNT, 201),
    ]
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return answers.pop(0)

    account = _client(handler).update_external_account("acc-1", {"nickname": "n"})
    assert account.id == "acc-1"
    assert len(keys) == 2 and len(set(keys)) == 1
