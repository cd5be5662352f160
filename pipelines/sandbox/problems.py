"""application/problem+json answers, shaped like Synctera's error catalogue (v0/common/errorcodes.yml)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

ERRORS_BASE = "https://dev.synctera.com/errors/"


def json_response(status: int, payload: Any, *, media_type: str = "application/json") -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")).encode(), status_code=status, media_type=media_type
    )


def problem(
    status: int,
    error_type: str,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": ERRORS_BASE + error_type,
        "title": title or error_type.replace("-", " ").title(),
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    body.update(extra)
    response = json_response(status, body, media_type="application/problem+json")
    response.headers.update(headers or {})
    return response


def bad_query(detail: str) -> Response:
    return problem(
        400, "bad-request-query", detail, code="BAD_QUERY_PARAMETER", title="Bad Request Query Parameter"
    )


def bad_body(
    detail: str, *, missing: list[str] | None = None, invalid: dict[str, str] | None = None
) -> Response:
    extra: dict[str, Any] = {}
    if missing:
        extra["missing"] = missing
    if invalid:
        extra["invalid"] = invalid
    return problem(
        400, "bad-request-body", detail, code="BAD_REQUEST_BODY", title="Bad Request Body", **extra
    )


def not_found(what: str) -> Response:
    return problem(404, "not-found", f"{what} not found", code="RESOURCE_NOT_FOUND")


def unauthenticated() -> Response:
    return problem(401, "unauthenticated", "a valid bearer API key is required", code="UNAUTHENTICATED")


def invalid_status(detail: str, valid: list[str]) -> Response:
    return problem(422, "unprocessable-entity", detail, code="INVALID_STATUS", valid_status=valid)
