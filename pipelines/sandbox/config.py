"""The sandbox's knobs: data shape, latency, faults and the day it believes is today."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ENDPOINTS = (
    "list",
    "add",
    "access_token",
    "add_vendor",
    "link_token",
    "sync_vendor",
    "get",
    "patch",
    "delete",
    "balance",
    "refresh",
    "transactions",
)
"""Short names of the sandbox's routes, used to scope latency and faults."""

FAULT_KINDS = (
    "429-header",  # Retry-After: <seconds> header
    "429-date",  # Retry-After: <HTTP date> header
    "429-body",  # problem body retry_after: <seconds>, no header
    "429-none",  # no hint at all
    "429-zero",  # Retry-After: 0
    "500",
    "502",  # an HTML page, as a proxy would send
    "503",
    "504",
    "drop",  # headers and part of the body, then the connection is closed
    "slow",  # the real answer, after `slow_seconds`
    # Bad answers with status 200 (the spec broken, as a buggy proxy or vendor would):
    "bad-json",  # the body cut in half
    "html-200",  # an HTML login page from a proxy
    "wrong-type",  # a field of the wrong type (a string amount, a number for a timestamp)
    "missing-field",  # the required top-level field is gone
    "outside-window",  # transactions: an extra row dated outside the requested window
    "page-cycle",  # list: next_page_token points back to the first page
    "repeat-accounts",  # list: an account of another page listed again
    "huge",  # a valid body padded past `huge_bytes`
    "new-field",  # schema drift: a field the spec does not know, on every record
    "missing-optional",  # schema drift: optional fields left out
)

DATA_FAULTS = frozenset(FAULT_KINDS[FAULT_KINDS.index("bad-json") :])

DENSITY_PROFILES = ("default", "light", "heavy", "empty")


def _frozen(mapping: Mapping[str, float] | None) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes the sandbox; the same config always yields the same data.

    ``density`` picks how busy accounts are: ``default`` mixes idle, light, medium and heavy accounts
    and plants days of exactly 499, 500 and over 500 transactions; ``light`` has a few per day;
    ``heavy`` has hundreds; ``empty`` has none. ``latency`` maps an endpoint name to seconds per call;
    ``fault_rates`` maps a fault kind to its probability per request (independently on every request,
    retries included), restricted to ``fault_endpoints`` when given. ``drift_account`` (an account's
    index) breaks that account's balance: it moves each day by more than its transactions.
    ``max_in_flight`` and ``rate_limit`` are the server's own limits, as an API gateway enforces them:
    a request above either is answered 429 with ``Retry-After`` (and counted, as fault ``limit``).
    """

    seed: int = 7
    accounts: int = 40
    history_days: int = 730
    density: str = "default"
    today: dt.date | None = None
    api_key: str = "sandbox-api-key"
    latency: Mapping[str, float] = field(default_factory=dict)
    fault_rates: Mapping[str, float] = field(default_factory=dict)
    fault_endpoints: frozenset[str] | None = None
    retry_after_seconds: int = 1
    slow_seconds: float = 2.0
    huge_bytes: int = 80 * 1024 * 1024
    pending_days: int = 2
    drift_account: int | None = None  # this account's balance drifts from its transactions
    max_in_flight: int | None = None  # more requests at once are answered 429 + Retry-After
    rate_limit: float | None = None  # requests per second (burst: one second's worth); above: 429

    def __post_init__(self) -> None:
        object.__setattr__(self, "latency", _frozen(self.latency))
        object.__setattr__(self, "fault_rates", _frozen(self.fault_rates))
        if self.accounts < 0 or self.history_days < 1:
            raise ValueError("accounts must be >= 0 and history_days >= 1")
        if self.density not in DENSITY_PROFILES:
            raise ValueError(f"unknown density {self.density!r}; choose one of {', '.join(DENSITY_PROFILES)}")
        for name in self.latency:
            if name not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {name!r} in latency; known: {', '.join(ENDPOINTS)}")
        for kind, rate in self.fault_rates.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate for {kind!r} must be within [0, 1], got {rate}")
        if sum(self.fault_rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        for name in self.fault_endpoints or ():
            if name not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {name!r} in fault_endpoints")
        if not self.api_key:
            raise ValueError("the sandbox needs a non-empty api_key")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {self.max_in_flight}")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError(f"rate_limit must be positive, got {self.rate_limit}")

    def resolved_today(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()
