"""Every route and status the sandbox can answer, validated against Synctera's published schemas.

Requests are made with plain httpx (not our client), and each body is checked with
openapi-schema-validator against the response schema that the spec declares for that path, method
and status. Statuses the spec does not declare (429, 503, 504, and the 400/422 variants Synctera's
error catalogue adds) must still be ``application/problem+json`` bodies of the ``error`` schema.
The one deliberate exception is the 502 fault, which imitates an HTML page from a proxy in front of
Synctera, not Synctera itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from pipelines.sandbox import FAULT_KINDS, RunningSandbox
from pipelines.sandbox.config import DATA_FAULTS

from .conftest import TODAY

SPEC_PATH = Path(__file__).parent / "spec" / "external-accounts.openapi.yaml"
SHARED_SPEC = Path(__file__).parents[2] / "shared" / "synctera" / "external-accounts.openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
REGISTRY = Registry().with_resource("spec", Resource.from_contents(SPEC, default_specification=DRAFT4))

HTTP_METHODS = {"get", "post", "patch", "delete", "put"}
CUSTOMER = "0b6f7c1e-2f0a-4a43-9d5e-6a4f6b1f2c3d"
NEW_ACCOUNT = {
    "account_identifiers": {"number": "123456789"},
    "account_owner_names": ["Ada Lovelace"],
    "customer_type": "PERSONAL",
    "customer_id": CUSTOMER,
    "routing_identifiers": {"bank_countries": ["US"], "bank_name": "Loopback Bank"},
    "type": "CHECKING",
}
VENDOR = {
    "customer_type": "PERSONAL",
    "customer_id": CUSTOMER,
    "vendor": "PLAID",
    "vendor_access_token": "tok-1",
}
TOKEN = {"customer_id": CUSTOMER, "vendor_institution_id": "ins_1", "vendor_public_token": "public-1"}
LINK = {
    "customer_id": CUSTOMER,
    "client_name": "Bank",
    "country_codes": ["US"],
    "language": "EN",
    "type": "DEPOSITORY",
}


def _spec_response(template: str, method: str, status: int) -> tuple[str, dict[str, Any]] | None:
    """(content type, schema) the spec declares for this answer, or None when it declares none."""
    responses = SPEC["paths"][template][method.lower()]["responses"]
    declared = responses.get(str(status))
    if declared is None:
        return None
    if "$ref" in declared:
        declared = SPEC["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
    ((content_type, media),) = declared["content"].items()
    return content_type, media["schema"]


def _validate(template: str, method: str, response: httpx.Response) -> None:
    declared = _spec_response(template, method, response.status_code)
    if declared is None:
        assert response.status_code >= 400, (
            f"{method} {template} answered an undeclared {response.status_code}"
        )
        declared = ("application/problem+json", {"$ref": "#/components/schemas/error"})
    content_type, schema = declared
    assert response.headers["content-type"].split(";")[0] == content_type
    resolved = {"$ref": "spec" + schema["$ref"]} if "$ref" in schema else schema
    validator = OAS30Validator(resolved, registry=REGISTRY)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(response.json())]
    assert errors == [], f"{method} {template} {response.status_code}"


def test_spec_copy_is_the_shared_one() -> None:
    if SHARED_SPEC.exists():  # beside the repository in CI and on developer machines
        digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (SPEC_PATH, SHARED_SPEC)]
        assert digest[0] == digest[1], "tests/spec is out of date with ../shared/synctera"
    assert SPEC["info"]["version"] == "0.153.0"


def test_every_route_and_status_conforms(server: RunningSandbox) -> None:
    sandbox = server.sandbox
    world = sandbox.world
    account = world.accounts[10]["id"]
    verified = next(
        a["id"]
        for a in world.accounts
        if a["verification"]["status"] == "VERIFIED" and a["status"] != "DELETED"
    )
    profiles = world.profiles.values()
    fresh = next(p.id for p in profiles if p.balance_age_seconds < 600 and not p.vendor_times_out)
    stale = next(p.id for p in profiles if p.balance_age_seconds > 3600 and not p.vendor_times_out)
    strict = next(p.id for p in profiles if p.requires_max_age and not p.vendor_times_out)
    broken = next(p.id for p in profiles if p.vendor_times_out)
    day = (TODAY - dt.timedelta(days=10)).isoformat()
    next_day = (TODAY - dt.timedelta(days=9)).isoformat()
    exercised: set[tuple[str, str, int]] = set()

    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.base_url, headers=headers) as http:

        def check(
            template: str, method: str, status: int, path: str | None = None, **kwargs: Any
        ) -> httpx.Response:
            response = http.request(method, path or template, **kwargs)
            assert response.status_code == status, f"{method} {path or template}: {response.text}"
            _validate(template, method, response)
            exercised.add((template, method, status))
            return response

        accounts, one, balance, refresh, transactions = (
            "/external_accounts",
            "/external_accounts/{external_account_id}",
            "/external_accounts/{external_account_id}/balance",
            "/external_accounts/{external_account_id}/refresh_transactions",
            "/external_accounts/{external_account_id}/transactions",
        )
        with_id = lambda template, account_id: template.replace("{external_account_id}", account_id)

        # listing
        page = check(accounts, "GET", 200, params={"limit": 5, "include_history": "true"}).json()
        check(accounts, "GET", 200, params={"page_token": page["next_page_token"], "customer_id": CUSTOMER})
        check(accounts, "GET", 400, params={"limit": 0})
        check(accounts, "GET", 400, params={"page_token": "forged"})
        unauthorized = httpx.get(server.base_url + accounts)
        assert unauthorized.status_code == 401
        _validate(accounts, "GET", unauthorized)
        exercised.add((accounts, "GET", 401))
        # adding, editing, deleting
        added = check(accounts, "POST", 201, json=NEW_ACCOUNT, headers={"Idempotency-Key": "c-1"}).json()
        check(accounts, "POST", 201, json=NEW_ACCOUNT, headers={"Idempotency-Key": "c-1"})  # replay
        check(
            accounts, "POST", 422, json={**NEW_ACCOUNT, "type": "SAVINGS"}, headers={"Idempotency-Key": "c-1"}
        )
        check(accounts, "POST", 409, json=NEW_ACCOUNT)
        check(accounts, "POST", 400, json={"type": "BROKERAGE"})
        check(one, "GET", 200, with_id(one, account))
        check(one, "GET", 404, with_id(one, "missing"))
        check(one, "PATCH", 200, with_id(one, added["id"]), json={"nickname": "n", "currency": "USD"})
        check(one, "PATCH", 422, with_id(one, verified), json={"nickname": "n"})
        check(one, "PATCH", 400, with_id(one, added["id"]), json={"status": "ACTIVE"})
        check(one, "PATCH", 404, with_id(one, "missing"), json={"nickname": "n"})
        check(one, "DELETE", 200, with_id(one, added["id"]))
        check(one, "DELETE", 422, with_id(one, added["id"]))
        check(one, "DELETE", 404, with_id(one, "missing"))
        # vendor linking and tokens
        for route in ("/external_accounts/add_vendor_accounts", "/external_accounts/sync_vendor_accounts"):
            check(route, "POST", 200, json={**VENDOR, "vendor_account_ids": ["v1", "missing-1", "fail-1"]})
            check(route, "POST", 400, json={"vendor": "YODLEE"})
        check("/external_accounts/access_tokens", "POST", 201, json=TOKEN)
        check(
            "/external_accounts/access_tokens", "POST", 400, json={**TOKEN, "vendor_public_token": "invalid"}
        )
        check("/external_accounts/link_tokens", "POST", 201, json=LINK)
        check("/external_accounts/link_tokens", "POST", 400, json={**LINK, "language": "XX"})
        # balances
        check(balance, "GET", 200, with_id(balance, fresh), params={"max_age": 600})
        check(balance, "GET", 422, with_id(balance, stale), params={"max_age": 600})
        check(balance, "GET", 400, with_id(balance, strict))
        check(balance, "GET", 400, with_id(balance, added["id"]))
        check(balance, "GET", 504, with_id(balance, broken), params={"max_age": 600})
        check(balance, "GET", 404, with_id(balance, "missing"))
        # transactions and refresh
        check(
            transactions,
            "GET",
            200,
            with_id(transactions, account),
            params={"start_date": day, "end_date": next_day},
        )
        check(transactions, "GET", 400, with_id(transactions, account), params={"start_date": day})
        check(
            transactions,
            "GET",
            422,
            with_id(transactions, account),
            params={"start_date": next_day, "end_date": day},
        )
        check(
            transactions,
            "GET",
            404,
            with_id(transactions, "missing"),
            params={"start_date": day, "end_date": next_day},
        )
        check(refresh, "POST", 200, with_id(refresh, account))
        check(refresh, "POST", 404, with_id(refresh, "missing"))
        # injected faults: every error a real Synctera could send (not the proxy's HTML 502, the
        # dropped connection, or the deliberately broken 200s)
        for kind in FAULT_KINDS:
            if kind in ("502", "drop", "slow") or kind in DATA_FAULTS:
                continue
            sandbox.faults.inject([kind], endpoint="list")
            status = int(kind.split("-")[0])
            response = check(accounts, "GET", status)
            if kind in ("429-header", "429-zero", "429-date"):
                assert "retry-after" in response.headers
            if kind == "429-body":
                assert response.json()["retry_after"] == sandbox.config.retry_after_seconds

    declared = {
        (template, method.upper())
        for template, item in SPEC["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert {(t, m) for t, m, _ in exercised} == declared, "every operation of the spec is exercised"
    successes = {(t, m) for t, m, s in exercised if s < 300}
    assert successes == declared


@pytest.mark.parametrize("kind", ["502"])
def test_proxy_fault_is_an_html_page(server: RunningSandbox, kind: str) -> None:
    server.sandbox.faults.inject([kind])
    response = httpx.get(
        server.base_url + "/external_accounts", headers={"Authorization": f"Bearer {server.api_key}"}
    )
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
