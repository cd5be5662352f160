"""Bad 200 answers, made from good ones: what a buggy vendor, proxy or a newer API version would send."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .problems import json_response

# The field each route's body cannot do without (a missing one is a schema violation).
REQUIRED_TOP_LEVEL = {
    "list": "external_accounts",
    "transactions": "transactions",
    "balance": "currency",
    "refresh": "transactions_synced",
    "add_vendor": "added_accounts",
    "sync_vendor": "added_accounts",
}
OPTIONAL_TRANSACTION_FIELDS = (
    "merchant_name",
    "category",
    "authorized_date",
    "payment_channel",
    "check_number",
)


def _records(endpoint: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The records a body carries: transactions, accounts, or the body itself."""
    for key in ("transactions", "external_accounts", "added_accounts"):
        if isinstance(payload.get(key), list):
            return [r for r in payload[key] if isinstance(r, dict)]
    return [payload]


def corrupt(
    kind: str,
    endpoint: str,
    request: Request,
    good: Response,
    *,
    first_account: dict[str, Any] | None,
    huge_bytes: int,
) -> Response:
    """``good`` turned bad by fault ``kind``; answers that carry no JSON are returned unchanged."""
    if good.status_code != 200 or not good.media_type or "json" not in good.media_type:
        return good
    raw = bytes(good.body)
    if kind == "bad-json":
        return Response(raw[: max(1, len(raw) // 2)], status_code=200, media_type="application/json")
    if kind == "html-200":
        return HTMLResponse("<html><body><form action='/login'>Please sign in</form></body></html>")
    payload = json.loads(raw)
    records = _records(endpoint, payload)
    if kind == "wrong-type":
        if endpoint == "transactions":
            rows = payload["transactions"] or [{"transaction_id": "wrong-type", "amount": 100}]
            rows[0]["amount"] = f"{rows[0].get('amount', 0) / 100:.2f}"  # a decimal string, not cents
            payload["transactions"] = rows
        elif endpoint == "balance":
            payload["current"] = str(payload.get("current"))
        else:
            for record in records[:1]:
                record["creation_time"] = 1700000000  # epoch seconds, not a date-time string
    elif kind == "missing-field":
        payload.pop(REQUIRED_TOP_LEVEL.get(endpoint, "id"), None)
    elif kind == "outside-window" and endpoint == "transactions":
        end = request.query_params.get("end_date")
        payload["transactions"].append({"transaction_id": "outside-window-row", "date": end, "amount": 1})
    elif kind == "page-cycle" and endpoint == "list":
        if request.query_params.get("page_token"):
            payload["next_page_token"] = request.query_params["page_token"]
    elif kind == "repeat-accounts" and endpoint == "list" and first_account is not None:
        payload["external_accounts"].insert(0, first_account)
    elif kind == "huge":
        payload["padding"] = "x" * huge_bytes
    elif kind == "new-field":
        for record in records:
            record["field_from_the_future"] = {"version": "0.999.0", "flag": True}
    elif kind == "missing-optional":
        for record in records:
            for field in OPTIONAL_TRANSACTION_FIELDS:
                record.pop(field, None)
    return json_response(200, payload)
