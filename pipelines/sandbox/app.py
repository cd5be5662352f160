"""The sandbox: a stateful imitation of Synctera's External Accounts API as an ASGI app.

It answers every operation at the spec's paths (base ``/v0``) with the spec's status codes and
problem+json errors, caps transactions at 500 in no promised order, clamps ``limit`` to 100, and can
be made slow or faulty per endpoint. ``Sandbox`` also exposes the ground truth that tests compare a
pipeline's output with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import json
import random
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import bodies, problems
from .config import DATA_FAULTS, SandboxConfig
from .corrupt import corrupt
from .faults import FaultPlan
from .limits import ServerLimits
from .state import AccountStore, BadPageToken, IdempotencyCache, ListFilter, Remembered
from .world import CAP, World, _iso, stable_int

MAX_LIMIT = 100
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class RequestRecord:
    """One request as the sandbox saw it (the Authorization header is never kept)."""

    method: str
    endpoint: str
    path: str
    query: dict[str, str]
    status: int
    fault: str | None
    idempotency_key: str | None
    at: dt.datetime


class DroppedResponse(Response):
    """Sends headers and a fragment of the body, then aborts the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"external_accounts": [', "more_body": True})
        raise ConnectionAbortedError("sandbox fault: connection dropped mid-body")


class Sandbox:
    """A configured sandbox: its data, its state, its faults, its request log and its ASGI app."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.world = World(self.config)
        self.today: dt.date = self.world.today
        self.store = AccountStore(self.config.seed, self.world.accounts)
        self.idempotency = IdempotencyCache()
        self.faults = FaultPlan(self.config)
        self.limits = ServerLimits(self.config.max_in_flight, self.config.rate_limit)
        self.requests: deque[RequestRecord] = deque(maxlen=200_000)
        self.in_flight = 0
        self.max_in_flight = 0
        self._log_lock = threading.Lock()
        self._serial = 0
        self._vendor_links: dict[str, dict[str, str]] = {}  # access token -> vendor account id -> account id
        self._full_numbers: dict[str, str] = {}  # account id -> unmasked number, for duplicate checks
        self.app = Starlette(
            routes=self._routes(),
            exception_handlers={HTTPException: self._http_exception},  # type: ignore[dict-item]
        )

    # --- ground truth --------------------------------------------------------------------------

    def true_transactions(self, account_id: str, day: dt.date) -> list[dict[str, Any]]:
        """Every transaction dated ``day`` that the API would show today (uncapped)."""
        return self.world.transactions_of_day(account_id, day, today=self.today)

    def true_day_counts(self, account_id: str, start: dt.date, days: int) -> list[int]:
        """How many transactions each of ``days`` days from ``start`` truly has (the planner's yardstick)."""
        return [
            self.world.visible_count(account_id, start + dt.timedelta(days=n), today=self.today)
            for n in range(days)
        ]

    def true_balance(self, account_id: str) -> dict[str, Any]:
        return self.world.balance(account_id, now=dt.datetime.now(dt.UTC), today=self.today)

    def accounts(self, *, include_history: bool = False) -> list[dict[str, Any]]:
        return [a for a in self.store.all() if include_history or a["status"] != "DELETED"]

    def clear_log(self) -> None:
        with self._log_lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def records(self, endpoint: str | None = None) -> list[RequestRecord]:
        with self._log_lock:
            return [r for r in self.requests if endpoint is None or r.endpoint == endpoint]

    # --- plumbing ----------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        base = "/v0/external_accounts"
        table: list[tuple[str, str, str, Handler]] = [
            ("list", "GET", base, self._list),
            ("add", "POST", base, self._add),
            ("access_token", "POST", f"{base}/access_tokens", self._access_token),
            ("add_vendor", "POST", f"{base}/add_vendor_accounts", self._add_vendor),
            ("link_token", "POST", f"{base}/link_tokens", self._link_token),
            ("sync_vendor", "POST", f"{base}/sync_vendor_accounts", self._sync_vendor),
            ("get", "GET", f"{base}/{{account_id}}", self._get),
            ("patch", "PATCH", f"{base}/{{account_id}}", self._patch),
            ("delete", "DELETE", f"{base}/{{account_id}}", self._delete),
            ("balance", "GET", f"{base}/{{account_id}}/balance", self._balance),
            ("refresh", "POST", f"{base}/{{account_id}}/refresh_transactions", self._refresh),
            ("transactions", "GET", f"{base}/{{account_id}}/transactions", self._transactions),
        ]
        return [
            Route(path, self._endpoint(name, handler), methods=[method])
            for name, method, path, handler in table
        ]

    async def _http_exception(self, request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            return problems.problem(405, "method-not-allowed", f"{request.method} is not allowed here")
        return problems.not_found(f"route {request.url.path}")

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token == self.config.api_key

    def _endpoint(self, name: str, handler: Handler) -> Handler:
        idempotent = name in {"add", "access_token", "add_vendor", "link_token", "sync_vendor", "patch"}

        async def endpoint(request: Request) -> Response:
            refused = self.limits.refuse(self.in_flight)
            if refused is not None:
                self._log(request, name, 429, "limit")
                return problems.problem(
                    429,
                    "too-many-requests",
                    "You have exceeded a rate limit",
                    code="TOO_MANY_REQUESTS",
                    headers={"Retry-After": refused},
                )
            self.in_flight += 1  # one event loop: no lock needed
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await answer(request)
            finally:
                self.in_flight -= 1

        async def answer(request: Request) -> Response:
            fault: str | None = None
            if not self._authorized(request):
                response = problems.unauthenticated()
            else:
                fault = self.faults.draw(name)
                delay = self.config.latency.get(name, 0.0) + (
                    self.config.slow_seconds if fault == "slow" else 0.0
                )
                if delay:
                    await asyncio.sleep(delay)
                if fault in (None, "slow", "drop") or fault in DATA_FAULTS:
                    response = await (self._idempotent(request, handler) if idempotent else handler(request))
                    # A drop happens after the work is done: the client never learns the outcome.
                    if fault == "drop":
                        response = DroppedResponse()
                    elif fault in DATA_FAULTS:
                        listing = self.store.all() if fault == "repeat-accounts" else []
                        first = listing[0] if listing else None
                        response = corrupt(
                            fault,
                            name,
                            request,
                            response,
                            first_account=first,
                            huge_bytes=self.config.huge_bytes,
                        )
                else:
                    response = self._fault(fault)
            self._log(request, name, response.status_code, fault)
            return response

        return endpoint

    def _log(self, request: Request, endpoint: str, status: int, fault: str | None) -> None:
        record = RequestRecord(
            method=request.method,
            endpoint=endpoint,
            path=request.url.path,
            query=dict(request.query_params),
            status=status,
            fault=fault,
            idempotency_key=request.headers.get("idempotency-key"),
            at=dt.datetime.now(dt.UTC),
        )
        with self._log_lock:
            self.requests.append(record)

    def _fault(self, kind: str) -> Response:
        wait = self.config.retry_after_seconds
        detail = "You have exceeded a rate limit"
        if kind == "429-header":
            return problems.problem(
                429, "too-many-requests", detail, code="TOO_MANY_REQUESTS", headers={"Retry-After": str(wait)}
            )
        if kind == "429-date":
            when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait + 1)
            header = email.utils.format_datetime(when, usegmt=True)
            return problems.problem(
                429, "too-many-requests", detail, code="TOO_MANY_REQUESTS", headers={"Retry-After": header}
            )
        if kind == "429-body":
            return problems.problem(
                429, "too-many-requests", detail, code="TOO_MANY_REQUESTS", retry_after=wait
            )
        if kind == "429-none":
            return problems.problem(429, "too-many-requests", detail, code="TOO_MANY_REQUESTS")
        if kind == "429-zero":
            return problems.problem(
                429, "too-many-requests", detail, code="TOO_MANY_REQUESTS", headers={"Retry-After": "0"}
            )
        if kind == "502":
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502)
        if kind == "503":
            return problems.problem(
                503, "service-unavailable", "temporarily unavailable", code="SERVICE_UNAVAILABLE"
            )
        if kind == "504":
            return problems.problem(504, "gateway-timeout", "upstream timed out", code="GATEWAY_TIMEOUT")
        return problems.problem(500, "internal-server-error", "sandbox fault", code="INTERNAL_ERROR")

    async def _idempotent(self, request: Request, handler: Handler) -> Response:
        key = request.headers.get("idempotency-key")
        if not key:
            return await handler(request)
        raw = await request.body()
        try:
            canonical = json.dumps(json.loads(raw), sort_keys=True).encode()
        except ValueError:
            canonical = raw
        fingerprint = IdempotencyCache.fingerprint(request.method, request.url.path, canonical)
        seen = self.idempotency.lookup(key)
        if seen is not None:
            if seen.fingerprint != fingerprint:
                return problems.problem(
                    422,
                    "unprocessable-entity",
                    "The request included an Idempotency-Key header which was already used for a different "
                    "request: an Idempotency-Key must not be reused across different paths, methods or "
                    "request payloads",
                    code="IDEMPOTENCY_INVALID_REUSE",
                )
            return Response(seen.body, status_code=seen.status, media_type="application/json")
        response = await handler(request)
        if response.status_code < 500:
            self.idempotency.remember(
                key, Remembered(fingerprint, response.status_code, bytes(response.body))
            )
        return response

    async def _json_body(self, request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            raise bodies.BodyError("the request body is not valid JSON") from None

    def _next_serial(self) -> int:
        with self._log_lock:
            self._serial += 1
            return self._serial

    # --- accounts ----------------------------------------------------------------------------------

    async def _list(self, request: Request) -> Response:
        query = request.query_params
        try:
            limit = int(query.get("limit", MAX_LIMIT))
        except ValueError:
            return problems.bad_query("limit must be an integer")
        if limit < 1:
            return problems.bad_query("limit must be at least 1")
        history = query.get("include_history", "false").lower()
        if history not in ("true", "false"):
            return problems.bad_query("include_history must be true or false")

        def csv(name: str) -> frozenset[str] | None:
            value = query.get(name)
            return frozenset(v for v in value.split(",") if v) if value else None

        selection = ListFilter(csv("id"), csv("customer_id"), csv("business_id"), history == "true")
        try:
            rows, token = self.store.page(
                selection, limit=min(limit, MAX_LIMIT), token=query.get("page_token")
            )
        except BadPageToken:
            return problems.bad_query("page_token is not valid")
        payload: dict[str, Any] = {"external_accounts": rows}
        if token is not None:
            payload["next_page_token"] = token
        return problems.json_response(200, payload)

    async def _get(self, request: Request) -> Response:
        account = self.store.get(request.path_params["account_id"])
        return problems.json_response(200, account) if account else problems.not_found("external account")

    async def _add(self, request: Request) -> Response:
        try:
            body = bodies.add_account(await self._json_body(request))
        except bodies.BodyError as exc:
            return problems.bad_body(exc.detail, missing=exc.missing, invalid=exc.invalid)
        owner_field = "customer_id" if body.get("customer_id") else "business_id"
        identifiers = body["account_identifiers"]
        number = str(identifiers.get("number") or identifiers.get("iban"))
        routing = body["routing_identifiers"]
        for existing in self.store.all():
            if (
                existing.get(owner_field) == body[owner_field]
                and existing["status"] != "DELETED"
                and self._full_numbers.get(existing["id"]) == number
                and existing["routing_identifiers"]["bank_name"] == routing["bank_name"]
            ):
                return problems.problem(
                    409,
                    "duplicate",
                    "this external account already exists",
                    code="DUPLICATE_RESOURCE",
                    title="Duplicate Resource",
                )
        now = _iso(dt.datetime.now(dt.UTC))
        account: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            owner_field: body[owner_field],
            "account_identifiers": {
                k: str(v)[-4:] for k, v in identifiers.items() if k in ("number", "iban")
            },
            "account_owner_names": body["account_owner_names"],
            "creation_time": now,
            "last_updated_time": now,
            "routing_identifiers": {
                "bank_countries": routing["bank_countries"],
                "bank_name": routing["bank_name"],
                **{
                    k: str(routing[k])[-4:]
                    for k in ("ach_routing_number", "wire_routing_number")
                    if routing.get(k)
                },
            },
            "status": "ACTIVE",
            "type": body["type"],
            "verification": {"status": "UNVERIFIED", "vendor": "MANUAL"},
            **{k: body[k] for k in ("currency", "metadata", "nickname", "tenant") if k in body},
        }
        self.store.insert(account)
        self._full_numbers[account["id"]] = number
        return problems.json_response(201, account)

    async def _patch(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        account = self.store.get(account_id)
        if account is None:
            return problems.not_found("external account")
        try:
            body = bodies.patch_account(await self._json_body(request))
        except bodies.BodyError as exc:
            return problems.bad_body(exc.detail, missing=exc.missing, invalid=exc.invalid)
        if (account.get("verification") or {}).get("status") != "UNVERIFIED":
            return problems.invalid_status("only unverified external accounts can be edited", ["UNVERIFIED"])
        changes: dict[str, Any] = {
            k: body[k] for k in ("account_owner_names", "currency", "nickname", "type") if k in body
        }
        if "verification" in body:
            changes["verification"] = body["verification"]
        if "account_identifiers" in body:
            changes["account_identifiers"] = {
                **account["account_identifiers"],
                **{k: str(v)[-4:] for k, v in body["account_identifiers"].items() if k in ("number", "iban")},
            }
        if "routing_identifiers" in body:
            routing = dict(account["routing_identifiers"])
            for key, value in body["routing_identifiers"].items():
                if key == "bank_name":
                    routing[key] = value
                elif key in ("ach_routing_number", "wire_routing_number", "eft_ca_routing_number"):
                    routing[key] = str(value)[-4:]
            changes["routing_identifiers"] = routing
        changes["last_updated_time"] = _iso(dt.datetime.now(dt.UTC))
        return problems.json_response(200, self.store.update(account_id, changes))

    async def _delete(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        account = self.store.get(account_id)
        if account is None:
            return problems.not_found("external account")
        if account["status"] == "DELETED":
            return problems.invalid_status("the external account is already deleted", ["ACTIVE", "CLOSED"])
        now = _iso(dt.datetime.now(dt.UTC))
        self.store.update(account_id, {"status": "DELETED", "deletion_time": now, "last_updated_time": now})
        return problems.json_response(200, {"id": account_id, "resource": "external_account"})

    # --- vendor linking --------------------------------------------------------------------------

    async def _access_token(self, request: Request) -> Response:
        try:
            body = bodies.access_token(await self._json_body(request))
        except bodies.BodyError as exc:
            return problems.bad_body(exc.detail, missing=exc.missing, invalid=exc.invalid)
        if body["vendor_public_token"] == "invalid":  # noqa: S105 - the sandbox's documented bad token
            return problems.problem(
                400, "bad-request", "the public token is invalid or expired", code="BAD_REQUEST"
            )
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return problems.json_response(
            201,
            {
                **body,
                "vendor_access_token": f"access-sandbox-{digest[:32]}",
                "request_id": str(uuid.uuid4()),
            },
        )

    async def _link_token(self, request: Request) -> Response:
        try:
            body = bodies.link_token(await self._json_body(request))
        except bodies.BodyError as exc:
            return problems.bad_body(exc.detail, missing=exc.missing, invalid=exc.invalid)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=4)
        return problems.json_response(
            201,
            {
                **body,
                "sdk_type": body.get("sdk_type", "WEB"),
                "verify_owner": body.get("verify_owner", False),
                "link_token": f"link-sandbox-{uuid.uuid4()}",
                "expiration": _iso(expires),
                "request_id": str(uuid.uuid4()),
            },
        )

    async def _add_vendor(self, request: Request) -> Response:
        return await self._link_vendor(request, sync=False)

    async def _sync_vendor(self, request: Request) -> Response:
        return await self._link_vendor(request, sync=True)

    async def _link_vendor(self, request: Request, *, sync: bool) -> Response:
        """Link the token's vendor accounts; on sync, also delete those the end user removed.

        Vendor account ids steer the outcome: ``missing…`` is not found, ``unsupported…`` is an
        unsupported type, ``fail…`` is a provider error; an id already linked is a duplicate on add.
        Without ``vendor_account_ids`` the token's two default accounts are linked.
        """
        try:
            body = bodies.vendor_accounts(await self._json_body(request))
        except bodies.BodyError as exc:
            return problems.bad_body(exc.detail, missing=exc.missing, invalid=exc.invalid)
        token = body["vendor_access_token"]
        wanted = body.get("vendor_account_ids") or [f"{token[-8:]}-{n}" for n in (1, 2)]
        owner_field = "customer_id" if body.get("customer_id") else "business_id"
        linked = self._vendor_links.setdefault(token, {})
        added, failed, deleted = [], [], []
        for vendor_account_id in wanted:
            failure = _vendor_failure(vendor_account_id)
            if failure is None and vendor_account_id in linked:
                if sync:
                    continue
                failure = ("DUPLICATE_ACCOUNT", "the account is already linked")
            if failure is not None:
                reason, description = failure
                entry = {
                    "reason": reason,
                    "reason_description": description,
                    "vendor_account_id": vendor_account_id,
                }
                if reason == "PROVIDER_ERROR":
                    entry |= {
                        "vendor_error_message": "the institution is unavailable",
                        "vendor_request_id": uuid.uuid4().hex,
                    }
                failed.append(entry)
                continue
            account = self._vendor_account(body, owner_field, vendor_account_id)
            self.store.insert(account)
            linked[vendor_account_id] = account["id"]
            added.append(account)
        if sync:
            now = _iso(dt.datetime.now(dt.UTC))
            for vendor_account_id in [v for v in linked if v not in wanted]:
                changes = {"status": "DELETED", "deletion_time": now, "last_updated_time": now}
                deleted.append(self.store.update(linked.pop(vendor_account_id), changes))
        payload: dict[str, Any] = {"added_accounts": added, "failed_accounts": failed}
        if sync:
            payload["deleted_accounts"] = deleted
        return problems.json_response(200, payload)

    def _vendor_account(
        self, body: dict[str, Any], owner_field: str, vendor_account_id: str
    ) -> dict[str, Any]:
        now = _iso(dt.datetime.now(dt.UTC))
        mask = f"{stable_int(vendor_account_id) % 10_000:04d}"
        return {
            "id": str(uuid.uuid4()),
            owner_field: body[owner_field],
            "account_identifiers": {"number": mask},
            "account_owner_names": ["Linked Owner"],
            "creation_time": now,
            "last_updated_time": now,
            "routing_identifiers": {
                "bank_countries": ["US"],
                "bank_name": "Vendor Linked Bank",
                "ach_routing_number": "0021",
            },
            "status": "ACTIVE",
            "type": "CHECKING",
            "verification": {
                "status": "VERIFIED",
                "vendor": body["vendor"],
                "creation_time": now,
                "last_updated_time": now,
            },
            "currency": "USD",
            "vendor_data": {"account_number_mask": mask, "institution_id": "ins_sandbox"},
        }

    # --- balances and transactions ---------------------------------------------------------------

    async def _balance(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        if self.store.get(account_id) is None:
            return problems.not_found("external account")
        raw_max_age = request.query_params.get("max_age")
        max_age: int | None = None
        if raw_max_age is not None:
            if not raw_max_age.isdigit():
                return problems.bad_query("max_age must be a non-negative integer")
            max_age = int(raw_max_age)
        profile = self.world.profiles.get(account_id)
        if profile is None:
            return problems.problem(
                400,
                "bad-request",
                "balances are not available for manually added accounts",
                code="FEATURE_NOT_AVAILABLE",
            )
        if profile.vendor_times_out:
            return problems.problem(
                504,
                "gateway-timeout",
                "Synctera's request to the vendor timed out",
                code="VENDOR_TIMEOUT",
                title="Gateway Timeout",
            )
        if profile.requires_max_age and max_age is None:
            return problems.bad_query("max_age is required for this financial institution")
        if max_age is not None and profile.balance_age_seconds > max_age:
            return problems.problem(
                422,
                "unprocessable-entity",
                f"the balance is {profile.balance_age_seconds}s old, older than max_age {max_age}s",
                code="BALANCE_TOO_OLD",
            )
        return problems.json_response(200, self.true_balance(account_id))

    async def _refresh(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        if self.store.get(account_id) is None:
            return problems.not_found("external account")
        for flag in ("restricted", "force_vendor_refresh"):
            if request.query_params.get(flag, "false").lower() not in ("true", "false"):
                return problems.bad_query(f"{flag} must be true or false")
        synced = sum(
            self.world.generated_count(account_id, self.today - dt.timedelta(days=d)) for d in range(30)
        )
        return problems.json_response(200, {"transactions_synced": synced})

    async def _transactions(self, request: Request) -> Response:
        account_id = request.path_params["account_id"]
        query = request.query_params
        try:
            start = dt.date.fromisoformat(query["start_date"])
            end = dt.date.fromisoformat(query["end_date"])
        except KeyError as exc:
            return problems.bad_query(f"{exc.args[0]} is required")
        except ValueError:
            return problems.bad_query("start_date and end_date must be dates (YYYY-MM-DD)")
        if start >= end:
            return problems.problem(
                422, "unprocessable-entity", "start_date must be before end_date", code="INVALID_DATE_RANGE"
            )
        if self.store.get(account_id) is None:
            return problems.not_found("external account")
        rows: list[dict[str, Any]] = []
        day = max(start, self.world.first_day)
        while day < end and day <= self.today:
            rows.extend(self.true_transactions(account_id, day))
            day += dt.timedelta(days=1)
        # No promised order, and which 500 survive the cap may differ from one call to the next.
        rng = random.Random(
            stable_int(self.config.seed, "shuffle", account_id, start, end, self._next_serial())
        )
        rows = rng.sample(rows, CAP) if len(rows) > CAP else rng.sample(rows, len(rows))
        return problems.json_response(200, {"transactions": rows})


def _vendor_failure(vendor_account_id: str) -> tuple[str, str] | None:
    for prefix, reason, description in (
        ("missing", "ACCOUNT_NOT_FOUND", "the vendor has no such account"),
        ("unsupported", "UNSUPPORTED_ACCOUNT_TYPE", "the account type is not supported"),
        ("fail", "PROVIDER_ERROR", "the vendor returned an error"),
    ):
        if vendor_account_id.startswith(prefix):
            return reason, description
    return None
