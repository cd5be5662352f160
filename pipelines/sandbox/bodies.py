"""Request-body checks against the spec's required fields and enums (the sandbox's own, not the client's)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


class BodyError(ValueError):
    def __init__(
        self, detail: str, *, missing: list[str] | None = None, invalid: dict[str, str] | None = None
    ):
        super().__init__(detail)
        self.detail = detail
        self.missing = missing or []
        self.invalid = invalid or {}


class Checker:
    """Collects every problem of one body before answering, like Synctera's BAD_REQUEST_BODY."""

    def __init__(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise BodyError("the request body must be a JSON object")
        self.body = body
        self.missing: list[str] = []
        self.invalid: dict[str, str] = {}

    def required(self, *fields: str, within: dict[str, Any] | None = None, prefix: str = "") -> None:
        source = self.body if within is None else within
        self.missing.extend(prefix + f for f in fields if source.get(f) in (None, ""))

    def enum(self, field: str, allowed: Iterable[str], *, within: dict[str, Any] | None = None) -> None:
        source = self.body if within is None else within
        value = source.get(field)
        allowed = list(allowed)
        if value is not None and value not in allowed:
            self.invalid[field] = f"must be one of {', '.join(allowed)}"

    def non_empty_strings(self, field: str) -> None:
        value = self.body.get(field)
        if value is not None and (
            not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value)
        ):
            self.invalid[field] = "must be a non-empty array of non-empty strings"

    def pattern(self, field: str, regex: str) -> None:
        value = self.body.get(field)
        if value is not None and (not isinstance(value, str) or not re.fullmatch(regex, value)):
            self.invalid[field] = f"must match {regex}"

    def one_customer(self) -> None:
        if (self.body.get("customer_id") is None) == (self.body.get("business_id") is None):
            self.invalid["customer_id"] = "exactly one of customer_id or business_id must be specified"

    def object(self, field: str) -> dict[str, Any]:
        value = self.body.get(field)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.invalid[field] = "must be an object"
            return {}
        return value

    def done(self) -> dict[str, Any]:
        if self.missing or self.invalid:
            raise BodyError("the request body is invalid", missing=self.missing, invalid=self.invalid)
        return self.body


def add_account(body: Any) -> dict[str, Any]:
    check = Checker(body)
    check.required(
        "account_identifiers", "account_owner_names", "customer_type", "routing_identifiers", "type"
    )
    check.enum("type", ["CHECKING", "SAVINGS"])
    check.enum("customer_type", ["BUSINESS", "PERSONAL"])
    check.non_empty_strings("account_owner_names")
    check.pattern("currency", r"[A-Z]{3}")
    check.one_customer()
    identifiers = check.object("account_identifiers")
    if "account_identifiers" in body and not (identifiers.get("number") or identifiers.get("iban")):
        check.invalid["account_identifiers"] = "at least one of number or iban must be specified"
    routing = check.object("routing_identifiers")
    if "routing_identifiers" in body:
        check.required("bank_countries", "bank_name", within=routing, prefix="routing_identifiers.")
    return check.done()


def vendor_accounts(body: Any) -> dict[str, Any]:
    check = Checker(body)
    check.required("customer_type", "vendor", "vendor_access_token")
    check.enum("customer_type", ["BUSINESS", "PERSONAL"])
    check.enum("vendor", ["FINICITY", "PLAID"])
    check.non_empty_strings("vendor_account_ids")
    check.one_customer()
    return check.done()


def access_token(body: Any) -> dict[str, Any]:
    check = Checker(body)
    check.required("vendor_institution_id", "vendor_public_token")
    if body.get("customer_id") is None and body.get("vendor_customer_id") is not None:
        body = {**body, "customer_id": body["vendor_customer_id"]}
        check.body = body
    check.one_customer()
    return check.done()


def link_token(body: Any) -> dict[str, Any]:
    check = Checker(body)
    check.required("client_name", "country_codes", "language", "type")
    check.enum("language", ["DE", "EN", "ES", "FR", "NL"])
    check.enum("type", ["CREDIT", "DEPOSITORY", "INVESTMENT", "MICRO_DEPOSIT"])
    check.enum("sdk_type", ["ANDROID", "IOS", "WEB"])
    codes = body.get("country_codes")
    if codes is not None and (
        not isinstance(codes, list) or not codes or any(c not in ("CA", "US") for c in codes)
    ):
        check.invalid["country_codes"] = "must be a non-empty array of CA or US"
    check.one_customer()
    return check.done()


PATCHABLE = {
    "account_identifiers",
    "account_owner_names",
    "currency",
    "nickname",
    "routing_identifiers",
    "type",
    "verification",
}


def patch_account(body: Any) -> dict[str, Any]:
    check = Checker(body)
    for field in sorted(set(body) - PATCHABLE):
        check.invalid[field] = "cannot be changed"
    check.enum("type", ["CHECKING", "SAVINGS"])
    check.pattern("currency", r"[A-Z]{3}")
    nickname = body.get("nickname")
    if nickname is not None and (not isinstance(nickname, str) or not nickname):
        check.invalid["nickname"] = "must be a non-empty string"
    verification = check.object("verification")
    if "verification" in body:
        check.enum("status", ["UNVERIFIED", "VERIFIED"], within=verification)
        check.enum("vendor", ["FINICITY", "MANUAL", "PLAID"], within=verification)
        check.required("status", "vendor", within=verification, prefix="verification.")
    return check.done()
