"""Account operations of the sync client against the running sandbox."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipelines.sandbox import RunningSandbox
from pipelines.synctera import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    SyncteraClient,
    UnprocessableEntityError,
)
from pipelines.synctera.models import AddAccountsRequest

from .conftest import FAST_RETRY

NEW_ACCOUNT = {
    "account_identifiers": {"number": "123456789"},
    "account_owner_names": ["Ada Lovelace"],
    "customer_type": "PERSONAL",
    "customer_id": "0b6f7c1e-2f0a-4a43-9d5e-6a4f6b1f2c3d",
    "routing_identifiers": {
        "bank_countries": ["US"],
        "bank_name": "Loopback Bank",
        "ach_routing_number": "021000021",
    },
    "type": "CHECKING",
}


def test_listing_pages_to_the_last_page_without_gaps_or_repeats(
    start_sandbox: Callable[..., RunningSandbox],
) -> None:
    server = start_sandbox(accounts=250)
    with SyncteraClient(base_url=server.base_url, api_key=server.api_key, retry=FAST_RETRY) as client:
        pages = list(client.iter_external_account_pages(limit=100))
        listed = [a.id for page in pages for a in page.external_accounts]
        with_history = [a.id for a in client.iter_external_accounts(include_history=True)]
    assert pages[-1].next_page_token is None
    assert all(page.next_page_token for page in pages[:-1])
    assert len(listed) == len(set(listed))
    assert set(listed) == {a["id"] for a in server.sandbox.accounts()}
    assert set(with_history) == {a["id"] for a in server.sandbox.accounts(include_history=True)}
    assert len(with_history) > len(listed), "the seeded data has deleted accounts, listed only with history"
    assert len(pages) == -(-len(listed) // 100)


def test_limit_above_100_is_clamped_to_100(start_sandbox: Callable[..., RunningSandbox]) -> None:
    server = start_sandbox(accounts=150)
    with SyncteraClient(base_url=server.base_url, api_key=server.api_key) as client:
        page = client.list_external_accounts(limit=500)
    assert len(page.external_accounts) == 100
    assert page.next_page_token is not None


def test_small_pages_list_the_same_accounts(client: SyncteraClient, sandbox) -> None:
    ids = [a.id for a in client.iter_external_accounts(limit=7)]
    assert sorted(ids) == sorted(a["id"] for a in sandbox.accounts())


def test_filters_select_accounts_by_id_and_customer(client: SyncteraClient, sandbox) -> None:
    accounts = sandbox.accounts()
    chosen = [accounts[0]["id"], accounts[5]["id"]]
    assert {a.id for a in client.iter_external_accounts(id=chosen)} == set(chosen)
    personal = next(a for a in accounts if "customer_id" in a)
    of_customer = list(client.iter_external_accounts(customer_id=[personal["customer_id"]]))
    assert of_customer
    assert {a.customer_id for a in of_customer} == {personal["customer_id"]}


def test_get_external_account_returns_typed_record(client: SyncteraClient, sandbox) -> None:
    expected = sandbox.accounts()[0]
    account = client.get_external_account(expected["id"])
    assert account.id == expected["id"]
    assert account.creation_time.tzinfo is not None
    assert account.routing_identifiers.bank_name == expected["routing_identifiers"]["bank_name"]


def test_unknown_account_is_not_found_with_problem_details(client: SyncteraClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_external_account("no-such-account")
    error = caught.value
    assert (error.status, error.code, error.method) == (404, "RESOURCE_NOT_FOUND", "GET")
    assert error.path == "/v0/external_accounts/no-such-account"
    assert error.type == "https://dev.synctera.com/errors/not-found"
    assert error.attempts == 1
    assert "404" in str(error)


def test_added_account_is_unverified_and_listed(client: SyncteraClient) -> None:
    account = client.add_external_accounts(AddAccountsRequest.model_validate(NEW_ACCOUNT))
    assert account.verification is not None
    assert account.verification.status == "UNVERIFIED"
    assert account.account_identifiers.number == "6789", "account numbers are masked to the last four"
    assert account.id in {a.id for a in client.iter_external_accounts()}


def test_adding_the_same_account_twice_conflicts(client: SyncteraClient) -> None:
    client.add_external_accounts(NEW_ACCOUNT)
    with pytest.raises(ConflictError) as caught:
        client.add_external_accounts(NEW_ACCOUNT)
    assert caught.value.code == "DUPLICATE_RESOURCE"


def test_invalid_body_is_refused_by_the_client_before_any_call(client: SyncteraClient, sandbox) -> None:
    bad = {**NEW_ACCOUNT, "business_id": "also-set"}
    with pytest.raises(ValueError, match="exactly one of customer_id or business_id"):
        client.add_external_accounts(bad)
    assert sandbox.records("add") == []


def test_patch_edits_only_unverified_accounts(client: SyncteraClient, sandbox) -> None:
    added = client.add_external_accounts(NEW_ACCOUNT)
    patched = client.update_external_account(added.id, {"nickname": "Rainy day"})
    assert patched.nickname == "Rainy day"
    verified = next(a for a in sandbox.accounts() if a["verification"]["status"] == "VERIFIED")
    with pytest.raises(UnprocessableEntityError) as caught:
        client.update_external_account(verified["id"], {"nickname": "nope"})
    assert caught.value.code == "INVALID_STATUS"


def test_delete_hides_the_account_unless_history_is_asked(client: SyncteraClient, sandbox) -> None:
    target = sandbox.accounts()[0]["id"]
    deleted = client.delete_external_account(target)
    assert (deleted.id, deleted.resource) == (target, "external_account")
    assert target not in {a.id for a in client.iter_external_accounts()}
    history = {a.id: a for a in client.iter_external_accounts(include_history=True)}
    assert history[target].status == "DELETED"
    assert history[target].deletion_time is not None
    with pytest.raises(UnprocessableEntityError):
        client.delete_external_account(target)


def test_vendor_add_reports_failures_and_duplicates(client: SyncteraClient) -> None:
    request = {
        "customer_type": "PERSONAL",
        "customer_id": "0b6f7c1e-2f0a-4a43-9d5e-6a4f6b1f2c3d",
        "vendor": "PLAID",
        "vendor_access_token": "access-sandbox-1",
        "vendor_account_ids": ["acc-1", "missing-2", "fail-3"],
    }
    result = client.add_vendor_external_accounts(request)
    assert [a.verification.vendor for a in result.added_accounts if a.verification] == ["PLAID"]
    assert {f.vendor_account_id: f.reason for f in result.failed_accounts} == {
        "missing-2": "ACCOUNT_NOT_FOUND",
        "fail-3": "PROVIDER_ERROR",
    }
    again = client.add_vendor_external_accounts({**request, "vendor_account_ids": ["acc-1"]})
    assert again.added_accounts == []
    assert again.failed_accounts[0].reason == "DUPLICATE_ACCOUNT"


def test_vendor_sync_adds_new_and_deletes_removed_accounts(client: SyncteraClient) -> None:
    base = {
        "customer_type": "BUSINESS",
        "business_id": "7d1c1b4e-0c9a-4b0e-8f43-2a1f0e6d5c4b",
        "vendor": "FINICITY",
        "vendor_access_token": "access-sandbox-2",
    }
    first = client.add_vendor_external_accounts({**base, "vendor_account_ids": ["a", "b"]})
    synced = client.sync_vendor_external_accounts({**base, "vendor_account_ids": ["b", "c"]})
    assert len(synced.added_accounts) == 1
    assert synced.deleted_accounts is not None
    assert [a.id for a in synced.deleted_accounts] == [first.added_accounts[0].id]
    assert synced.deleted_accounts[0].status == "DELETED"


def test_access_and_link_tokens_are_created(client: SyncteraClient) -> None:
    customer = "0b6f7c1e-2f0a-4a43-9d5e-6a4f6b1f2c3d"
    access = client.create_access_token(
        {"customer_id": customer, "vendor_institution_id": "ins_1", "vendor_public_token": "public-sandbox-1"}
    )
    assert access.vendor_access_token and access.request_id
    # The spec's deprecated alias for customer_id names the customer on its own.
    aliased = client.create_access_token(
        {"vendor_customer_id": customer, "vendor_institution_id": "ins_1", "vendor_public_token": "p-2"}
    )
    assert aliased.vendor_access_token and aliased.customer_id == customer  # the sandbox read the alias
    link = client.create_verification_link_token(
        {
            "customer_id": customer,
            "client_name": "Bank",
            "country_codes": ["US"],
            "language": "EN",
            "type": "DEPOSITORY",
        }
    )
    assert link.link_token and link.expiration is not None and link.expiration.tzinfo is not None
    with pytest.raises(BadRequestError):
        client.create_access_token(
            {"customer_id": customer, "vendor_institution_id": "ins_1", "vendor_public_token": "invalid"}
        )


def test_refresh_transactions_reports_a_count(client: SyncteraClient, sandbox) -> None:
    result = client.refresh_transactions(sandbox.accounts()[1]["id"], force_vendor_refresh=True)
    assert result.transactions_synced >= 0
    assert sandbox.records("refresh")[0].query == {"force_vendor_refresh": "true"}
